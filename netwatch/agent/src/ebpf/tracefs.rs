//! Finds tracefs, mounting it when nothing has, and reads tracepoint record layouts from the
//! `format` files, because field offsets differ between kernel versions.

use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
};

use netwatch_common::TracepointLayout;

use super::EbpfError;

const MOUNT_POINT: &str = "/sys/kernel/tracing";
const LEGACY_MOUNT_POINT: &str = "/sys/kernel/debug/tracing";

/// Returns where tracefs is mounted, mounting it at /sys/kernel/tracing if it is nowhere.
///
/// This must run before aya first looks for tracefs: aya remembers the answer for the life of
/// the process.
pub fn ensure_mounted() -> Result<PathBuf, EbpfError> {
    for candidate in [MOUNT_POINT, LEGACY_MOUNT_POINT] {
        if Path::new(candidate).join("events").is_dir() {
            return Ok(PathBuf::from(candidate));
        }
    }
    let target = CString::new(MOUNT_POINT).expect("constant has no NUL");
    let fstype = CString::new("tracefs").expect("constant has no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings; data may be null.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(EbpfError::MountTracefs {
            path: PathBuf::from(MOUNT_POINT),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(PathBuf::from(MOUNT_POINT))
}

/// Reads `<tracefs>/events/<group>/<name>/format` into the offsets the programs need.
pub fn read_layout(tracefs: &Path, group: &str, name: &str) -> Result<TracepointLayout, EbpfError> {
    let path = tracefs.join("events").join(group).join(name).join("format");
    let text = std::fs::read_to_string(&path).map_err(|source| EbpfError::TracepointFormat {
        path: path.clone(),
        source,
    })?;
    layout_from_format(&text).map_err(|field| EbpfError::TracepointField { path, field })
}

/// Offsets of the fields netwatch reads, checked against the sizes the programs assume.
/// Missing optional fields are [`TracepointLayout::ABSENT`]; a missing address field is an
/// error naming it.
pub fn layout_from_format(format: &str) -> Result<TracepointLayout, &'static str> {
    let fields = parse_fields(format);
    let find = |names: &[&str], size: u16| -> u16 {
        names
            .iter()
            .find_map(|name| {
                fields
                    .get(*name)
                    .filter(|(_, s)| *s == size)
                    .map(|(o, _)| *o)
            })
            .unwrap_or(TracepointLayout::ABSENT)
    };
    let layout = TracepointLayout {
        family: find(&["family"], 2),
        sport: find(&["sport"], 2),
        dport: find(&["dport"], 2),
        saddr: find(&["saddr"], 4),
        daddr: find(&["daddr"], 4),
        saddr_v6: find(&["saddr_v6"], 16),
        daddr_v6: find(&["daddr_v6"], 16),
        state: find(&["state", "newstate"], 4),
        oldstate: find(&["oldstate"], 4),
        protocol: find(&["protocol"], 2),
        skaddr: find(&["skaddr"], 8),
        skbaddr: find(&["skbaddr"], 8),
        err: find(&["err"], 4),
    };
    for (offset, field) in [
        (layout.family, "family (2 bytes)"),
        (layout.daddr, "daddr (4 bytes)"),
        (layout.daddr_v6, "daddr_v6 (16 bytes)"),
    ] {
        if offset == TracepointLayout::ABSENT {
            return Err(field);
        }
    }
    Ok(layout)
}

/// `field:__u8 saddr[4]; offset:34; size:4; signed:0;` (tab-separated) -> ("saddr", (34, 4)).
fn parse_fields(format: &str) -> HashMap<String, (u16, u16)> {
    let mut fields = HashMap::new();
    for line in format.lines() {
        let mut parts = line.trim().split(';').map(str::trim);
        let Some(decl) = parts.next().and_then(|p| p.strip_prefix("field:")) else {
            continue;
        };
        let Some(name) = decl.split_whitespace().last() else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name);
        let mut offset = None;
        let mut size = None;
        for part in parts {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        if let (Some(offset), Some(size)) = (offset, size) {
            fields.insert(name.to_string(), (offset, size));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tcp:tcp_retransmit_skb as kernel 6.18 prints it.
    const RETRANSMIT_6_18: &str = "name: tcp_retransmit_skb
ID: 1520
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skbaddr;	offset:8;	size:8;	signed:0;
	field:const void * skaddr;	offset:16;	size:8;	signed:0;
	field:int state;	offset:24;	size:4;	signed:1;
	field:__u16 sport;	offset:28;	size:2;	signed:0;
	field:__u16 dport;	offset:30;	size:2;	signed:0;
	field:__u16 family;	offset:32;	size:2;	signed:0;
	field:__u8 saddr[4];	offset:34;	size:4;	signed:0;
	field:__u8 daddr[4];	offset:38;	size:4;	signed:0;
	field:__u8 saddr_v6[16];	offset:42;	size:16;	signed:0;
	field:__u8 daddr_v6[16];	offset:58;	size:16;	signed:0;
	field:int err;	offset:76;	size:4;	signed:1;

print fmt: \"...\"
";

    #[test]
    fn retransmit_layout_is_read_from_the_format_file() {
        let layout = layout_from_format(RETRANSMIT_6_18).expect("complete format");
        assert_eq!(
            (layout.state, layout.sport, layout.dport, layout.family),
            (24, 28, 30, 32)
        );
        assert_eq!((layout.saddr, layout.daddr), (34, 38));
        assert_eq!((layout.saddr_v6, layout.daddr_v6), (42, 58));
        assert_eq!((layout.skaddr, layout.skbaddr, layout.err), (16, 8, 76));
        assert_eq!(layout.oldstate, TracepointLayout::ABSENT);
        assert_eq!(layout.protocol, TracepointLayout::ABSENT);
    }

    #[test]
    fn sock_state_uses_newstate_as_state() {
        let format = "\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;";
        let layout = layout_from_format(format).expect("complete format");
        assert_eq!(
            (layout.oldstate, layout.state, layout.protocol),
            (16, 20, 30)
        );
    }

    #[test]
    fn missing_or_resized_address_field_is_named() {
        let without_v6 = RETRANSMIT_6_18.replace("daddr_v6", "other_v6");
        assert_eq!(layout_from_format(&without_v6), Err("daddr_v6 (16 bytes)"));
        let resized = RETRANSMIT_6_18.replace(
            "__u16 family;\toffset:32;\tsize:2",
            "__u32 family;\toffset:32;\tsize:4",
        );
        assert_eq!(layout_from_format(&resized), Err("family (2 bytes)"));
    }
}
