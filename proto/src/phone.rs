//! Recipient normalisation: local (`0812-3456-789`) and international (`+62 812…`)
//! phone numbers and WhatsApp JIDs become one canonical JID, and logs see numbers
//! masked.

use std::fmt;

const USER_SERVER: &str = "s.whatsapp.net";
const GROUP_SERVER: &str = "g.us";
/// E.164 allows at most 15 digits; fewer than 8 with the country code is no mobile number.
const MIN_DIGITS: usize = 8;
const MAX_DIGITS: usize = 15;

/// A normalised WhatsApp address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Jid {
    /// A person: country code and number, digits only.
    User(String),
    /// A group: the id before `@g.us`.
    Group(String),
}

impl Jid {
    /// The digits or group id before the `@`.
    pub fn user(&self) -> &str {
        match self {
            Jid::User(user) | Jid::Group(user) => user,
        }
    }

    pub fn is_group(&self) -> bool {
        matches!(self, Jid::Group(_))
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jid::User(user) => write!(f, "{user}@{USER_SERVER}"),
            Jid::Group(id) => write!(f, "{id}@{GROUP_SERVER}"),
        }
    }
}

/// Why a recipient cannot be used. The messages are meant for the person who wrote
/// the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("recipient is empty")]
    Empty,
    #[error("recipient contains {0:?}; use digits, spaces, '-', '.', '(', ')' and one leading '+'")]
    InvalidCharacter(char),
    #[error("recipient has {0} digits; a phone number with its country code has 8 to 15")]
    WrongLength(usize),
    #[error("recipient has no country code after '+'")]
    MissingCountryCode,
    #[error("recipient JID {0:?} is not a WhatsApp user (…@s.whatsapp.net) or group (…@g.us)")]
    InvalidJid(String),
}

/// Normalises a recipient. `default_country_code` (e.g. `62`) replaces the leading `0`
/// of a local number. Digits without `+` or a leading `0` are taken as already
/// carrying their country code, as WhatsApp's own `wa.me` links do.
pub fn normalize_recipient(input: &str, default_country_code: &str) -> Result<Jid, PhoneError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(PhoneError::Empty);
    }
    if let Some((user, server)) = input.split_once('@') {
        return parse_jid(user, server, input);
    }
    let digits = phone_digits(input)?;
    let international = if let Some(rest) = digits.strip_prefix('+') {
        if rest.is_empty() || rest.starts_with('0') {
            return Err(PhoneError::MissingCountryCode);
        }
        rest.to_owned()
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("{default_country_code}{rest}")
    } else {
        digits
    };
    // `+62 0812…` and `620812…` carry the trunk 0 after the country code.
    let international = match international.strip_prefix(default_country_code) {
        Some(rest) if rest.starts_with('0') && !default_country_code.is_empty() => {
            format!("{default_country_code}{}", rest.trim_start_matches('0'))
        }
        _ => international,
    };
    check_length(&international)?;
    Ok(Jid::User(international))
}

/// Keeps the digits (and a leading `+`) of a phone number written with separators.
fn phone_digits(input: &str) -> Result<String, PhoneError> {
    // "(0)" is the trunk prefix written inside an international number: +62 (0)812…
    let input = input.replace("(0)", "");
    let mut out = String::with_capacity(input.len());
    for (i, c) in input.trim().chars().enumerate() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push(c),
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            other => return Err(PhoneError::InvalidCharacter(other)),
        }
    }
    Ok(out)
}

fn check_length(digits: &str) -> Result<(), PhoneError> {
    if (MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
        Ok(())
    } else {
        Err(PhoneError::WrongLength(digits.len()))
    }
}

fn parse_jid(user: &str, server: &str, input: &str) -> Result<Jid, PhoneError> {
    let invalid = || PhoneError::InvalidJid(input.to_owned());
    // A device suffix (`628…:12@s.whatsapp.net`) addresses one device; the person is
    // the part before it.
    let user = user.split(':').next().unwrap_or_default();
    match server.to_ascii_lowercase().as_str() {
        // `c.us` is what whatsapp-web.js wrote; it is the same person.
        USER_SERVER | "c.us" => {
            if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            check_length(user)?;
            Ok(Jid::User(user.to_owned()))
        }
        GROUP_SERVER => {
            let valid = !user.is_empty()
                && user.len() <= 64
                && user
                    .split('-')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
            if valid {
                Ok(Jid::Group(user.to_owned()))
            } else {
                Err(invalid())
            }
        }
        _ => Err(invalid()),
    }
}

/// `text` with every run of ten or more digits (a phone number with its country
/// code, or a LID, say in a library's error or log line) masked as [`mask_phone`]
/// masks it. Shorter runs (dates, times, counts) stay, and so do runs that touch a
/// letter (hex ids such as message ids).
pub fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    // Whether the character before the current run of digits is a letter.
    let mut after_letter = false;
    let mut last: Option<char> = None;
    for c in text.chars().map(Some).chain(std::iter::once(None)) {
        match c {
            Some(d) if d.is_ascii_digit() => {
                if digits.is_empty() {
                    after_letter = last.is_some_and(|l| l.is_ascii_alphabetic());
                }
                digits.push(d);
            }
            _ => {
                let before_letter = c.is_some_and(|n| n.is_ascii_alphabetic());
                if digits.len() >= 10 && !after_letter && !before_letter {
                    out.push_str(&mask_phone(&digits));
                } else {
                    out.push_str(&digits);
                }
                digits.clear();
                out.extend(c);
            }
        }
        last = c;
    }
    out
}

/// Masks a phone number or JID for logs: `6281234567890@s.whatsapp.net` becomes
/// `62812*****890`. Anything short is masked whole but for its last two characters.
pub fn mask_phone(value: &str) -> String {
    let user = value.split('@').next().unwrap_or_default();
    // Separators would show where the hidden digits are; only the digits count.
    let chars: Vec<char> = user
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let n = chars.len();
    if n >= 9 {
        let mut out: String = chars[..5].iter().collect();
        out.extend(std::iter::repeat_n('*', n - 8));
        out.extend(&chars[n - 3..]);
        out
    } else {
        let keep = n.min(2);
        let mut out: String = std::iter::repeat_n('*', n - keep).collect();
        out.extend(&chars[n - keep..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_long_enough_for_a_number_are_masked() {
        assert_eq!(
            mask_numbers("failed to encrypt for 6281200000111@c.us.0 (1 of 2)"),
            "failed to encrypt for 62812*****111@c.us.0 (1 of 2)"
        );
        assert_eq!(mask_numbers("170000000000001@lid"), "17000*******001@lid");
        assert_eq!(
            mask_numbers("2026-12-01T15:20:41.168662Z retry_in_ms=1000 20261201T153159.562Z"),
            "2026-12-01T15:20:41.168662Z retry_in_ms=1000 20261201T153159.562Z"
        );
        assert_eq!(mask_numbers("6512345678"), "65123**678");
        assert_eq!(
            mask_numbers("message_id=3EB01234567890123ABC job 1234567890123F"),
            "message_id=3EB01234567890123ABC job 1234567890123F"
        );
    }

    fn ok(input: &str) -> String {
        normalize_recipient(input, "62")
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .to_string()
    }

    #[test]
    fn normalises_a_table_of_inputs() {
        let table: &[(&str, Result<&str, PhoneError>)] = &[
            ("0812-3456-789", Ok("628123456789@s.whatsapp.net")),
            ("081234567890", Ok("6281234567890@s.whatsapp.net")),
            ("0812 3456 7890", Ok("6281234567890@s.whatsapp.net")),
            ("(0812) 3456-7890", Ok("6281234567890@s.whatsapp.net")),
            ("0812.3456.7890", Ok("6281234567890@s.whatsapp.net")),
            ("  081234567890  ", Ok("6281234567890@s.whatsapp.net")),
            ("+62 812-3456-7890", Ok("6281234567890@s.whatsapp.net")),
            ("+6281234567890", Ok("6281234567890@s.whatsapp.net")),
            ("+62 (0)812 3456 7890", Ok("6281234567890@s.whatsapp.net")),
            ("+62 0812 3456 7890", Ok("6281234567890@s.whatsapp.net")),
            ("6281234567890", Ok("6281234567890@s.whatsapp.net")),
            ("62081234567890", Ok("6281234567890@s.whatsapp.net")),
            ("006281234567890", Ok("6281234567890@s.whatsapp.net")),
            ("+1 (415) 555-2671", Ok("14155552671@s.whatsapp.net")),
            ("+44 20 7946 0958", Ok("442079460958@s.whatsapp.net")),
            ("+60 12-345 6789", Ok("60123456789@s.whatsapp.net")),
            (
                "6281234567890@s.whatsapp.net",
                Ok("6281234567890@s.whatsapp.net"),
            ),
            (
                "6281234567890@S.WhatsApp.Net",
                Ok("6281234567890@s.whatsapp.net"),
            ),
            ("6281234567890@c.us", Ok("6281234567890@s.whatsapp.net")),
            (
                "6281234567890:12@s.whatsapp.net",
                Ok("6281234567890@s.whatsapp.net"),
            ),
            ("120363025246125486@g.us", Ok("120363025246125486@g.us")),
            (
                "6281234567890-1600000000@g.us",
                Ok("6281234567890-1600000000@g.us"),
            ),
            ("", Err(PhoneError::Empty)),
            ("   ", Err(PhoneError::Empty)),
            ("abc", Err(PhoneError::InvalidCharacter('a'))),
            ("0812-3456-789x", Err(PhoneError::InvalidCharacter('x'))),
            ("62+81234567890", Err(PhoneError::InvalidCharacter('+'))),
            ("++6281234567890", Err(PhoneError::InvalidCharacter('+'))),
            ("0812/3456/7890", Err(PhoneError::InvalidCharacter('/'))),
            ("+", Err(PhoneError::MissingCountryCode)),
            ("+0812345678", Err(PhoneError::MissingCountryCode)),
            ("0812", Err(PhoneError::WrongLength(5))),
            ("12345", Err(PhoneError::WrongLength(5))),
            ("+62 812 3456 7890 1234", Err(PhoneError::WrongLength(17))),
            ("٠٨١٢٣٤٥٦٧٨٩", Err(PhoneError::InvalidCharacter('٠'))),
            (
                "user@example.com",
                Err(PhoneError::InvalidJid("user@example.com".into())),
            ),
            (
                "abc@s.whatsapp.net",
                Err(PhoneError::InvalidJid("abc@s.whatsapp.net".into())),
            ),
            ("@g.us", Err(PhoneError::InvalidJid("@g.us".into()))),
            ("12-@g.us", Err(PhoneError::InvalidJid("12-@g.us".into()))),
            ("123@s.whatsapp.net", Err(PhoneError::WrongLength(3))),
        ];
        assert!(table.len() >= 25);
        for (input, expected) in table {
            let got = normalize_recipient(input, "62").map(|jid| jid.to_string());
            let expected = expected.clone().map(str::to_owned);
            assert_eq!(got, expected, "input {input:?}");
        }
    }

    #[test]
    fn other_default_country_codes() {
        assert_eq!(
            normalize_recipient("012-345 6789", "60")
                .unwrap()
                .to_string(),
            "60123456789@s.whatsapp.net"
        );
        // A number that already carries another country code is left alone.
        assert_eq!(ok("+6591234567"), "6591234567@s.whatsapp.net");
    }

    #[test]
    fn groups_are_groups() {
        assert!(
            normalize_recipient("120363025246125486@g.us", "62")
                .unwrap()
                .is_group()
        );
        assert!(
            !normalize_recipient("081234567890", "62")
                .unwrap()
                .is_group()
        );
    }

    #[test]
    fn errors_read_well() {
        let err = normalize_recipient("0812-ABC", "62").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipient contains 'A'; use digits, spaces, '-', '.', '(', ')' and one leading '+'"
        );
    }

    #[test]
    fn masks_numbers() {
        assert_eq!(mask_phone("6281234567890@s.whatsapp.net"), "62812*****890");
        assert_eq!(mask_phone("628123456789"), "62812****789");
        assert_eq!(mask_phone("0812"), "**12");
        assert_eq!(mask_phone(""), "");
        assert!(!mask_phone("081234567890").contains("3456"));
        assert_eq!(mask_phone("0812-3456-7890"), "08123****890");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// The canonical shape: a person is 8 to 15 digits at `s.whatsapp.net`, a
        /// group is digits joined by `-` at `g.us`.
        fn assert_canonical(jid: &Jid) -> Result<(), TestCaseError> {
            let text = jid.to_string();
            match jid {
                Jid::User(user) => {
                    prop_assert!(user.bytes().all(|b| b.is_ascii_digit()), "{}", text);
                    prop_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&user.len()), "{}", text);
                    prop_assert_eq!(text, format!("{user}@s.whatsapp.net"));
                }
                Jid::Group(id) => {
                    prop_assert!(
                        id.split('-')
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
                        "{}",
                        text
                    );
                    prop_assert_eq!(text, format!("{id}@g.us"));
                }
            }
            Ok(())
        }

        fn check(input: &str, country_code: &str) -> Result<(), TestCaseError> {
            let _ = mask_phone(input);
            if let Ok(jid) = normalize_recipient(input, country_code) {
                assert_canonical(&jid)?;
                // Normalising the normalised form changes nothing.
                let again = normalize_recipient(&jid.to_string(), country_code);
                prop_assert_eq!(again, Ok(jid));
            }
            Ok(())
        }

        /// Something a person might type: digits and separators, maybe a `+`, maybe a
        /// JID server.
        fn phone_like() -> impl Strategy<Value = String> {
            "[+]?[0-9 ().\\-]{0,22}(@(s\\.whatsapp\\.net|S\\.WhatsApp\\.Net|g\\.us|c\\.us)|:[0-9]{1,2}@s\\.whatsapp\\.net)?"
        }

        /// Separators written between digit groups.
        fn separator() -> impl Strategy<Value = &'static str> {
            prop_oneof![Just(""), Just(" "), Just("-"), Just("."), Just("\u{a0}")]
        }

        /// A number written in groups: the digits, each followed by a separator.
        fn written(digits: &str, seps: &[&str]) -> String {
            digits
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    format!(
                        "{c}{}",
                        if i % 4 == 3 {
                            seps[(i / 4) % seps.len()]
                        } else {
                            ""
                        }
                    )
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_text_never_panics_and_gives_a_canonical_idempotent_jid(
                input in any::<String>(),
                country_code in "[0-9]{0,3}",
            ) {
                check(&input, &country_code)?;
            }

            #[test]
            fn phone_like_text_gives_a_canonical_idempotent_jid(
                input in phone_like(),
                country_code in prop_oneof![Just("62".to_owned()), "[1-9][0-9]{0,2}"],
            ) {
                check(&input, &country_code)?;
            }

            #[test]
            fn local_and_plus_62_forms_of_one_number_agree(
                rest in "[1-9][0-9]{4,14}",
                seps in proptest::collection::vec(separator(), 1..4),
            ) {
                let local = format!("0{}", written(&rest, &seps));
                let plus = format!("+62 {}", written(&rest, &seps));
                let bare = format!("62{rest}");
                let from_local = normalize_recipient(&local, "62");
                prop_assert_eq!(&from_local, &normalize_recipient(&plus, "62"), "{} vs {}", local, plus);
                prop_assert_eq!(&from_local, &normalize_recipient(&bare, "62"));
                if (MIN_DIGITS..=MAX_DIGITS).contains(&bare.len()) {
                    prop_assert_eq!(from_local, Ok(Jid::User(bare)));
                } else {
                    prop_assert_eq!(from_local, Err(PhoneError::WrongLength(bare.len())));
                }
            }
        }
    }
}
