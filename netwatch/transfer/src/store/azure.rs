//! Azure Blob Storage settings from where Azure's own tools look for them:
//! `AZURE_STORAGE_CONNECTION_STRING` (as the portal gives it; `UseDevelopmentStorage=true` is
//! Azurite's), else `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or
//! `AZURE_STORAGE_SAS_TOKEN` (the `az` command's variables), and `AZURE_STORAGE_BLOB_ENDPOINT`
//! for a server other than `https://ACCOUNT.blob.core.windows.net`. No managed-identity or
//! CLI lookup: a host without credentials gets a clear error instead of requests to an
//! address that may not answer.

use std::env;

use object_store::azure::MicrosoftAzureBuilder;

/// Where credentials were looked for, for the error that says none were found.
pub(crate) const LOOKED: &str = "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT \
    with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN";

/// Azurite's well-known development account (documented by Microsoft).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// Why no Azure client could be configured.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    /// None of the variables in [`LOOKED`].
    Credentials,
    /// An account without a key or SAS (or the other way round).
    Half {
        set: &'static str,
        unset: &'static str,
    },
    /// A connection string without a part it needs.
    ConnectionString { lacks: &'static str },
    /// The URL names one account and the environment's credentials are another's.
    OtherAccount { named: String, given: String },
}

/// The account, its credential and its endpoint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Account {
    pub name: String,
    pub credential: Credential,
    /// The blob service's URL, account path included for Azurite's path-style URLs.
    pub endpoint: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    Key(String),
    /// A SAS token, without its leading `?`.
    Sas(String),
}

/// A builder for `container` with the environment's account, which must be `named` when the
/// URL names one (`https://ACCOUNT.blob.core.windows.net/...`).
pub(crate) fn builder(
    container: &str,
    named: Option<&str>,
) -> Result<MicrosoftAzureBuilder, Missing> {
    let var = |name: &str| env::var(name).ok().filter(|v| !v.is_empty());
    let account = account_named(&var, named)?;
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(&account.name)
        .with_container_name(container);
    builder = match account.credential {
        Credential::Key(key) => builder.with_access_key(key),
        Credential::Sas(token) => builder.with_sas_authorization(query_pairs(&token)),
    };
    if let Some(endpoint) = account.endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    Ok(builder)
}

/// The account the variables `var` gives name.
pub(crate) fn account(var: &dyn Fn(&str) -> Option<String>) -> Result<Account, Missing> {
    if let Some(text) = var("AZURE_STORAGE_CONNECTION_STRING") {
        return from_connection_string(&text);
    }
    let name = var("AZURE_STORAGE_ACCOUNT");
    let key = var("AZURE_STORAGE_KEY");
    let sas = var("AZURE_STORAGE_SAS_TOKEN");
    let credential = match (key, sas) {
        (Some(key), _) => Some(Credential::Key(key)),
        (None, Some(sas)) => Some(Credential::Sas(sas.trim_start_matches('?').to_string())),
        (None, None) => None,
    };
    match (name, credential) {
        (Some(name), Some(credential)) => Ok(Account {
            name,
            credential,
            endpoint: var("AZURE_STORAGE_BLOB_ENDPOINT"),
        }),
        (Some(_), None) => Err(Missing::Half {
            set: "AZURE_STORAGE_ACCOUNT",
            unset: "AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN",
        }),
        (None, Some(_)) => Err(Missing::Half {
            set: "AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN",
            unset: "AZURE_STORAGE_ACCOUNT",
        }),
        (None, None) => Err(Missing::Credentials),
    }
}

/// The account the variables give, where the URL may name it: then `AZURE_STORAGE_ACCOUNT`
/// may be left out, and credentials for another account are refused.
pub(crate) fn account_named(
    var: &dyn Fn(&str) -> Option<String>,
    named: Option<&str>,
) -> Result<Account, Missing> {
    let Some(named) = named else {
        return account(var);
    };
    let with_name = |name: &str| match name {
        "AZURE_STORAGE_ACCOUNT" => var(name).or_else(|| Some(named.to_string())),
        _ => var(name),
    };
    let account = account(&with_name)?;
    if account.name != named {
        return Err(Missing::OtherAccount {
            named: named.to_string(),
            given: account.name,
        });
    }
    Ok(account)
}

/// `Key=Value;Key=Value` as the portal gives it (values may hold `=`, as keys do).
fn from_connection_string(text: &str) -> Result<Account, Missing> {
    let mut parts = std::collections::HashMap::new();
    for part in text.split(';').filter(|p| !p.trim().is_empty()) {
        if let Some((key, value)) = part.split_once('=') {
            parts.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let get = |key: &str| parts.get(key).cloned();
    if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let endpoint = get("developmentstorageproxyuri")
            .map(|proxy| format!("{}/{DEV_ACCOUNT}", proxy.trim_end_matches('/')))
            .unwrap_or_else(|| DEV_ENDPOINT.to_string());
        return Ok(Account {
            name: DEV_ACCOUNT.to_string(),
            credential: Credential::Key(DEV_KEY.to_string()),
            endpoint: Some(endpoint),
        });
    }
    let name = get("accountname").ok_or(Missing::ConnectionString {
        lacks: "AccountName",
    })?;
    let credential = match (get("accountkey"), get("sharedaccesssignature")) {
        (Some(key), _) => Credential::Key(key),
        (None, Some(sas)) => Credential::Sas(sas.trim_start_matches('?').to_string()),
        (None, None) => {
            return Err(Missing::ConnectionString {
                lacks: "AccountKey or SharedAccessSignature",
            })
        }
    };
    let endpoint = get("blobendpoint").or_else(|| {
        get("endpointsuffix").map(|suffix| {
            let protocol = get("defaultendpointsprotocol").unwrap_or_else(|| "https".into());
            format!("{protocol}://{name}.blob.{suffix}")
        })
    });
    Ok(Account {
        name,
        credential,
        endpoint,
    })
}

/// A SAS token's `k=v&k=v` pairs, percent-decoding left to the signer (tokens are given
/// already encoded, and sent back as given).
fn query_pairs(token: &str) -> Vec<(String, String)> {
    token
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

/// `%2F` and friends back to bytes: object_store encodes the pairs again.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn connection_strings_and_variables_give_an_account_or_say_what_is_missing() {
        let portal = vars(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5==;EndpointSuffix=core.windows.net",
        )]);
        assert_eq!(
            account(&portal),
            Ok(Account {
                name: "acct".into(),
                credential: Credential::Key("a2V5==".into()),
                endpoint: Some("https://acct.blob.core.windows.net".into()),
            })
        );
        let azurite = vars(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "UseDevelopmentStorage=true",
        )]);
        assert_eq!(account(&azurite).unwrap().name, DEV_ACCOUNT);
        let sas = vars(&[
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_SAS_TOKEN", "?sv=2022&sig=a%2Bb"),
        ]);
        assert_eq!(
            account(&sas).unwrap().credential,
            Credential::Sas("sv=2022&sig=a%2Bb".into())
        );
        assert_eq!(query_pairs("sv=2022&sig=a%2Bb")[1].1, "a+b");
        assert_eq!(account(&vars(&[])), Err(Missing::Credentials));
        assert!(matches!(
            account(&vars(&[("AZURE_STORAGE_ACCOUNT", "acct")])),
            Err(Missing::Half { .. })
        ));
        assert_eq!(
            account(&vars(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=acct"
            )])),
            Err(Missing::ConnectionString {
                lacks: "AccountKey or SharedAccessSignature"
            })
        );
    }

    #[test]
    fn an_account_in_the_url_needs_only_its_key_and_refuses_another_accounts() {
        let key_only = vars(&[("AZURE_STORAGE_KEY", "a2V5")]);
        assert_eq!(account_named(&key_only, Some("acct")).unwrap().name, "acct");
        let other = vars(&[
            ("AZURE_STORAGE_ACCOUNT", "other"),
            ("AZURE_STORAGE_KEY", "a2V5"),
        ]);
        assert_eq!(
            account_named(&other, Some("acct")),
            Err(Missing::OtherAccount {
                named: "acct".into(),
                given: "other".into()
            })
        );
        assert_eq!(
            account_named(&vars(&[]), Some("acct")),
            Err(Missing::Half {
                set: "AZURE_STORAGE_ACCOUNT",
                unset: "AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN",
            })
        );
    }
}
