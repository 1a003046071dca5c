//! User and group names and ids, through the C library (so NSS sources such as LDAP count),
//! without a crate for a few calls.

use std::{ffi::CString, io, mem, ptr};

/// The largest buffer offered to the C library for one entry (groups with thousands of
/// members need more than the usual kilobyte).
const MAX_BUFFER: usize = 1 << 20;

/// The id of the group called `name`; `None` if there is none.
pub fn gid_of(name: &str) -> io::Result<Option<u32>> {
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a group name has no NUL byte"))?;
    lookup(|group, buf, result| {
        // SAFETY: every pointer is valid for the call and `buf.len()` is the buffer's size.
        unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                group,
                buf.as_mut_ptr().cast(),
                buf.len(),
                result,
            )
        }
    })
    .map(|found| found.map(|(gid, _)| gid))
}

/// The name of group `gid`; `None` if it has none.
pub fn group_name(gid: u32) -> io::Result<Option<String>> {
    lookup(|group, buf, result| {
        // SAFETY: as in `gid_of`.
        unsafe { libc::getgrgid_r(gid, group, buf.as_mut_ptr().cast(), buf.len(), result) }
    })
    .map(|found| found.map(|(_, name)| name))
}

/// A user's uid and primary gid; `None` if there is no such user.
pub fn user(name: &str) -> io::Result<Option<(u32, u32)>> {
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a user name has no NUL byte"))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `passwd` is plain data (integers and pointers) for which zero is valid.
        let mut entry: libc::passwd = unsafe { mem::zeroed() };
        let mut result: *mut libc::passwd = ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is the buffer's size.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some((entry.pw_uid, entry.pw_gid))),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            libc::ERANGE if buf.len() < MAX_BUFFER => buf.resize(buf.len() * 2, 0),
            code => return Err(io::Error::from_raw_os_error(code)),
        }
    }
}

/// Runs a `getgr*_r` call, growing the buffer while it is too small.
fn lookup(
    call: impl Fn(*mut libc::group, &mut [u8], *mut *mut libc::group) -> libc::c_int,
) -> io::Result<Option<(u32, String)>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `group` is plain data (integers and pointers) for which zero is valid.
        let mut group: libc::group = unsafe { mem::zeroed() };
        let mut result: *mut libc::group = ptr::null_mut();
        match call(&mut group, &mut buf, &mut result) {
            0 if result.is_null() => return Ok(None),
            0 => {
                // SAFETY: on success `gr_name` points to a NUL-terminated string in `buf`.
                let name = unsafe { std::ffi::CStr::from_ptr(group.gr_name) };
                return Ok(Some((group.gr_gid, name.to_string_lossy().into_owned())));
            }
            // getgrnam_r(3): these mean "no such group" in some C libraries.
            libc::ENOENT | libc::ESRCH => return Ok(None),
            libc::ERANGE if buf.len() < MAX_BUFFER => buf.resize(buf.len() * 2, 0),
            code => return Err(io::Error::from_raw_os_error(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_group_is_found_by_id_and_by_name() {
        // SAFETY: getegid cannot fail.
        let gid = unsafe { libc::getegid() };
        let name = group_name(gid)
            .unwrap()
            .expect("the test's group has a name");
        assert_eq!(gid_of(&name).unwrap(), Some(gid));
    }

    #[test]
    fn a_missing_group_is_none() {
        assert_eq!(gid_of("netwatch-no-such-group-x").unwrap(), None);
    }

    #[test]
    fn root_is_uid_zero_and_a_missing_user_is_none() {
        assert_eq!(user("root").unwrap().map(|(uid, _)| uid), Some(0));
        assert_eq!(user("netwatch-no-such-user-x").unwrap(), None);
    }
}
