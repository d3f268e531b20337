//! Accounts: the WhatsApp numbers one installation sends from. Each account is one
//! wa-gateway, named by a short slug; a job names the account that sends it, or
//! none for the default one.

/// The name of the account of an installation that names none.
pub const DEFAULT: &str = "default";

/// The longest account name.
pub const MAX_CHARS: usize = 32;

/// An account name is 1 to 32 lowercase letters, digits and '-', starting with a
/// letter or digit (`sd-harapan`): it becomes a folder name, a metrics label and
/// part of a Firestore query, and reads the same in all of them.
pub fn check(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    let chars = name.chars().count();
    if chars > MAX_CHARS {
        return Err(format!(
            "has {chars} characters; at most {MAX_CHARS} are allowed"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("use lowercase letters, digits and '-' (like sd-harapan)".into());
    }
    if name.starts_with('-') {
        return Err("must start with a letter or a digit".into());
    }
    Ok(())
}

/// One account and the URL of its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub account: String,
    pub url: String,
}

/// Reads a list of accounts and their gateways, `name=URL` comma-separated, the
/// default account first (`DISPATCHER_ACCOUNTS`, `STATUS_WEB_ACCOUNTS`). Refused: an
/// entry that is not `name=URL`, a bad name or URL, a name listed twice, two
/// accounts with one URL, an empty list.
pub fn parse_gateways(list: &str) -> Result<Vec<Gateway>, String> {
    let mut gateways: Vec<Gateway> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((account, url)) = entry.split_once('=') else {
            return Err(format!(
                "{entry:?} is not name=URL (like sd-harapan=http://127.0.0.1:50052)"
            ));
        };
        let (account, url) = (account.trim(), url.trim());
        check(account).map_err(|e| format!("account name {account:?}: {e}"))?;
        let url = crate::config::grpc_url(url).map_err(|e| format!("{account}: {e}"))?;
        if gateways.iter().any(|g| g.account == account) {
            return Err(format!("account {account:?} is listed twice"));
        }
        if let Some(other) = gateways.iter().find(|g| g.url == url) {
            return Err(format!(
                "{} and {account} have the same gateway {url}; each account needs its own",
                other.account
            ));
        }
        gateways.push(Gateway {
            account: account.to_owned(),
            url,
        });
    }
    if gateways.is_empty() {
        return Err("lists no account".into());
    }
    Ok(gateways)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lowercase_slugs() {
        for ok in ["default", "sd-harapan", "smp2", "7", &"a".repeat(MAX_CHARS)] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (bad, reason) in [
            ("", "is empty"),
            ("SD-Harapan", "use lowercase"),
            ("sd harapan", "use lowercase"),
            ("sd_harapan", "use lowercase"),
            ("-sd", "must start"),
            ("sekolah/1", "use lowercase"),
            (&"a".repeat(MAX_CHARS + 1), "has 33 characters"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.starts_with(reason), "{bad:?}: {err}");
        }
    }
}
