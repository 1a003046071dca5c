//! One answer for every subcommand: each combination of flag, environment and file, parsed
//! from each subcommand's command line, resolves to the same socket and configuration file.

use std::{ffi::OsString, path::PathBuf};

use clap::Parser;

use super::*;
use crate::cli::Cli;

impl Environment {
    /// No variables, and no system configuration file.
    pub(crate) fn empty() -> Self {
        Self {
            socket: None,
            config: None,
            cache_dir: None,
            xdg_cache_home: None,
            home: None,
            system_config: PathBuf::from("/nonexistent/netwatch.toml"),
        }
    }
}

/// Every subcommand, with the arguments it needs besides the paths.
const SUBCOMMANDS: &[&[&str]] = &[
    &["agent"],
    &["status"],
    &["watch"],
    &["wait-online"],
    &["put", "file", "k"],
    &["get", "k", "out"],
    &["mirrors"],
    &["sync"],
];

struct Files {
    _dir: tempfile::TempDir,
    /// Sets `[socket] path = "/from/flag-file.sock"`.
    flag_file: PathBuf,
    /// Sets `[socket] path = "/from/env-file.sock"`.
    env_file: PathBuf,
    /// The system-wide file; sets `[socket] path = "/from/system-file.sock"`.
    system_file: PathBuf,
    /// Sets nothing.
    empty_file: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Files {
        flag_file: write("flag.toml", "[socket]\npath = \"/from/flag-file.sock\"\n"),
        env_file: write("env.toml", "[socket]\npath = \"/from/env-file.sock\"\n"),
        system_file: write(
            "system.toml",
            "[socket]\npath = \"/from/system-file.sock\"\n",
        ),
        empty_file: write("empty.toml", "# nothing\n"),
        _dir: dir,
    }
}

/// The documented order, written independently of the resolver.
fn expected(
    flag_config: Option<&PathBuf>,
    env_config: Option<&PathBuf>,
    system_exists: bool,
    files: &Files,
    flag_socket: bool,
    env_socket: bool,
) -> (Option<PathBuf>, PathBuf) {
    let config = flag_config
        .or(env_config)
        .cloned()
        .or_else(|| system_exists.then(|| files.system_file.clone()));
    let from_file = match &config {
        Some(path) if *path == files.flag_file => Some("/from/flag-file.sock"),
        Some(path) if *path == files.env_file => Some("/from/env-file.sock"),
        Some(path) if *path == files.system_file => Some("/from/system-file.sock"),
        _ => None,
    };
    let socket = if flag_socket {
        "/from/flag.sock"
    } else if env_socket {
        "/from/env.sock"
    } else {
        from_file.unwrap_or(DEFAULT_SOCKET_PATH)
    };
    (config, PathBuf::from(socket))
}

#[test]
fn every_subcommand_resolves_socket_and_config_file_alike() {
    let files = files();
    let mut cases = 0;
    for flag_config in [None, Some(&files.flag_file), Some(&files.empty_file)] {
        for env_config in [None, Some(&files.env_file)] {
            for system_exists in [false, true] {
                for flag_socket in [false, true] {
                    for env_socket in [false, true] {
                        let env = Environment {
                            socket: env_socket.then(|| OsString::from("/from/env.sock")),
                            config: env_config.map(|p| p.clone().into_os_string()),
                            system_config: if system_exists {
                                files.system_file.clone()
                            } else {
                                PathBuf::from("/nonexistent/netwatch.toml")
                            },
                            ..Environment::empty()
                        };
                        let want = expected(
                            flag_config,
                            env_config,
                            system_exists,
                            &files,
                            flag_socket,
                            env_socket,
                        );
                        for subcommand in SUBCOMMANDS {
                            let mut argv: Vec<OsString> = ["netwatch"]
                                .iter()
                                .chain(*subcommand)
                                .map(|a| a.into())
                                .collect();
                            if let Some(path) = flag_config {
                                argv.extend(["--config".into(), path.clone().into_os_string()]);
                            }
                            if flag_socket {
                                argv.extend(["--socket".into(), "/from/flag.sock".into()]);
                            }
                            let cli = Cli::try_parse_from(&argv)
                                .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                            let got = resolve(&cli.command.path_flags(), &env).unwrap();
                            assert_eq!(
                                (got.config_file, got.socket),
                                want.clone(),
                                "{argv:?} with {env:?}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 3 * 2 * 2 * 2 * 2 * SUBCOMMANDS.len());
}

#[test]
fn a_namespaced_agent_defaults_to_its_own_socket_after_flag_environment_and_file() {
    let files = files();
    let resolve_agent = |extra: &[&str], env: &Environment| {
        let argv = ["netwatch", "agent", "--netns", "lab"].iter().chain(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        resolve(&cli.command.path_flags(), env).unwrap().socket
    };
    let bare = Environment::empty();
    assert_eq!(
        resolve_agent(&[], &bare),
        Path::new("/run/netwatch/netns-lab.sock")
    );
    let file = files.flag_file.to_str().unwrap();
    assert_eq!(
        resolve_agent(&["--config", file], &bare),
        Path::new("/from/flag-file.sock")
    );
    let env = Environment {
        socket: Some("/from/env.sock".into()),
        ..Environment::empty()
    };
    assert_eq!(resolve_agent(&[], &env), Path::new("/from/env.sock"));
    assert_eq!(
        resolve_agent(&["--socket", "/x.sock"], &env),
        Path::new("/x.sock")
    );
}

#[test]
fn the_cache_is_the_flag_then_the_environment_then_xdg_then_home() {
    let cache = |flag: Option<&str>, env: &Environment| {
        let flags = PathFlags {
            cache: flag.map(PathBuf::from),
            ..PathFlags::default()
        };
        resolve(&flags, env).unwrap().cache
    };
    let mut env = Environment::empty();
    assert_eq!(cache(None, &env), None);
    env.home = Some("/home/u".into());
    assert_eq!(cache(None, &env), Some("/home/u/.cache/netwatch".into()));
    env.xdg_cache_home = Some("relative".into());
    assert_eq!(
        cache(None, &env),
        Some("/home/u/.cache/netwatch".into()),
        "a relative XDG_CACHE_HOME is ignored"
    );
    env.xdg_cache_home = Some("/xdg".into());
    assert_eq!(cache(None, &env), Some("/xdg/netwatch".into()));
    env.cache_dir = Some("/env-cache".into());
    assert_eq!(cache(None, &env), Some("/env-cache".into()));
    assert_eq!(cache(Some("/flag-cache"), &env), Some("/flag-cache".into()));
}

#[test]
fn a_named_file_that_is_missing_is_an_error_naming_it() {
    let flags = PathFlags {
        config: Some("/nonexistent/named.toml".into()),
        ..PathFlags::default()
    };
    let error = resolve(&flags, &Environment::empty()).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/named.toml"),
        "{error}"
    );
}

#[test]
fn a_namespaced_agent_does_not_take_the_host_default_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("example.toml");
    std::fs::write(
        &example,
        format!("[socket]\npath = \"{DEFAULT_SOCKET_PATH}\"\n"),
    )
    .unwrap();
    let argv = [
        "netwatch",
        "agent",
        "--netns",
        "lab",
        "--config",
        example.to_str().unwrap(),
    ];
    let flags = Cli::try_parse_from(argv).unwrap().command.path_flags();
    let env = Environment {
        socket: Some(DEFAULT_SOCKET_PATH.into()),
        ..Environment::empty()
    };
    let own = Path::new("/run/netwatch/netns-lab.sock");
    assert_eq!(resolve(&flags, &Environment::empty()).unwrap().socket, own);
    assert_eq!(resolve(&flags, &env).unwrap().socket, own);
}
