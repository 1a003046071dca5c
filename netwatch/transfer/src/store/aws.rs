//! S3 settings from where AWS tools look for them: the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`...), then the shared files (`~/.aws/credentials` and
//! `~/.aws/config`, or `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`) for the profile
//! `AWS_PROFILE` or `default`. No instance-metadata lookup: a host without credentials gets a
//! clear error instead of requests to an address that may not answer.

use std::{collections::HashMap, env, path::PathBuf};

use object_store::aws::AmazonS3Builder;

/// Where credentials were looked for, for the error that says none were found.
pub(crate) const LOOKED: &str = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
    AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_*, and the \
    profile in the shared credentials file";

/// Why no S3 client could be configured.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    Credentials {
        profile: String,
        file: PathBuf,
    },
    Half {
        set: &'static str,
        unset: &'static str,
    },
}

/// A builder for `bucket` with the environment's and the profile's settings.
pub(crate) fn builder(bucket: &str) -> Result<AmazonS3Builder, Missing> {
    let var = |name: &str| env::var(name).ok().filter(|v| !v.is_empty());
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let home = var("HOME").map(PathBuf::from).unwrap_or_default();
    let credentials_file = var("AWS_SHARED_CREDENTIALS_FILE")
        .map_or_else(|| home.join(".aws/credentials"), PathBuf::from);
    let config_file =
        var("AWS_CONFIG_FILE").map_or_else(|| home.join(".aws/config"), PathBuf::from);

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(_), Some(_)) => {}
        (Some(_), None) => {
            return Err(Missing::Half {
                set: "AWS_ACCESS_KEY_ID",
                unset: "AWS_SECRET_ACCESS_KEY",
            })
        }
        (None, Some(_)) => {
            return Err(Missing::Half {
                set: "AWS_SECRET_ACCESS_KEY",
                unset: "AWS_ACCESS_KEY_ID",
            })
        }
        (None, None) => {
            let web_identity =
                var("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && var("AWS_ROLE_ARN").is_some();
            let container = var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
                || (var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
                    && var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").is_some());
            if !web_identity && !container {
                let section = read_ini(&credentials_file)
                    .remove(&profile)
                    .unwrap_or_default();
                match (
                    section.get("aws_access_key_id"),
                    section.get("aws_secret_access_key"),
                ) {
                    (Some(id), Some(secret)) => {
                        builder = builder
                            .with_access_key_id(id)
                            .with_secret_access_key(secret);
                        if let Some(token) = section.get("aws_session_token") {
                            builder = builder.with_token(token);
                        }
                    }
                    _ => {
                        return Err(Missing::Credentials {
                            profile,
                            file: credentials_file,
                        })
                    }
                }
            }
        }
    }

    // The config file names its sections `[profile NAME]`, except `[default]`.
    let section_name = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    let config = read_ini(&config_file)
        .remove(&section_name)
        .unwrap_or_default();
    if var("AWS_REGION").is_none() && var("AWS_DEFAULT_REGION").is_none() {
        if let Some(region) = config.get("region") {
            builder = builder.with_region(region);
        }
    }
    let endpoint = var("AWS_ENDPOINT_URL_S3")
        .or_else(|| var("AWS_ENDPOINT_URL"))
        .or_else(|| var("AWS_ENDPOINT"));
    let endpoint = match endpoint {
        Some(endpoint) => Some(endpoint),
        None => {
            let endpoint = config.get("endpoint_url").cloned();
            if let Some(endpoint) = &endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            endpoint
        }
    };
    // A local S3 server (SeaweedFS, MinIO) is often plain HTTP; AWS itself never is.
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    Ok(builder)
}

/// The sections of an AWS INI file and their top-level keys; nothing if it cannot be read.
fn read_ini(path: &std::path::Path) -> HashMap<String, HashMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    parse_ini(&text)
}

fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        // Indented lines belong to a nested setting (`s3 =` followed by its keys).
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            let value = value.trim();
            if !value.is_empty() {
                sections
                    .entry(section.clone())
                    .or_default()
                    .insert(key.trim().to_ascii_lowercase(), value.to_string());
            }
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_their_keys_are_read_as_aws_tools_write_them() {
        let text = "\
# comment
[default]
aws_access_key_id = AKIDEXAMPLE
aws_secret_access_key=secret
s3 =
  endpoint_url = http://ignored

[profile ci]
region = eu-central-1
endpoint_url = http://127.0.0.1:8333
";
        let ini = parse_ini(text);
        assert_eq!(ini["default"]["aws_access_key_id"], "AKIDEXAMPLE");
        assert_eq!(ini["default"]["aws_secret_access_key"], "secret");
        assert!(!ini["default"].contains_key("endpoint_url"));
        assert_eq!(ini["profile ci"]["region"], "eu-central-1");
        assert_eq!(ini["profile ci"]["endpoint_url"], "http://127.0.0.1:8333");
    }
}
