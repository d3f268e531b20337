//! Recipient normalisation by libphonenumber's rules (the `phonenumber` crate):
//! local (`0812-3456-789`, or `812-3456-789` with the trunk 0 a spreadsheet
//! dropped) and international (`+62 812…`, `0062 812…`) phone numbers and WhatsApp
//! JIDs become one canonical JID, each number checked against its country's
//! numbering plan; and logs see numbers masked.

use std::fmt;

use phonenumber::PhoneNumber;
use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;

/// The country code of local numbers unless `WA_DEFAULT_COUNTRY_CODE` says
/// otherwise: Indonesia.
pub const DEFAULT_COUNTRY_CODE: &str = "62";

const USER_SERVER: &str = "s.whatsapp.net";
const GROUP_SERVER: &str = "g.us";
/// A JID is WhatsApp's own address, taken as written; its user part must still look
/// like an E.164 number: at most 15 digits, and at least the 7 of the shortest
/// numbering plans (Niue, Saint Helena). A normalised number has the same shape, so
/// normalising its JID again changes nothing.
const MIN_JID_DIGITS: usize = 7;
const MAX_JID_DIGITS: usize = 15;
/// More digits than any number can be written with (15, an international prefix and
/// a trunk 0 after the country code) are refused without parsing.
const MAX_WRITTEN_DIGITS: usize = 20;

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
/// the job, and never repeat the recipient (they reach logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("recipient is empty")]
    Empty,
    #[error("recipient contains {0:?}; use digits, spaces, '-', '.', '(', ')' and one leading '+'")]
    InvalidCharacter(char),
    #[error("recipient has no country code after '+'")]
    MissingCountryCode,
    #[error(
        "recipient ({digits} digits) is not a valid phone number, neither as a local number of +{country_code} nor with a country code"
    )]
    NotANumber { digits: usize, country_code: String },
    #[error("recipient ({digits} digits after '+') is not a valid international phone number")]
    NotAnInternationalNumber { digits: usize },
    #[error("recipient JID has {0} digits; a WhatsApp user JID has 7 to 15")]
    WrongJidLength(usize),
    #[error("recipient JID is not a WhatsApp user (…@s.whatsapp.net) or group (…@g.us)")]
    InvalidJid,
}

/// Loads libphonenumber's numbering plans and the rules of `country_code`'s numbers,
/// which the first number otherwise pays for (about 0.1 s in a release build, most
/// of a second in a debug one): services call it on the blocking pool at start, so
/// no request waits for it on the async runtime.
pub fn warm_up(country_code: &str) {
    let _ = region(country_code).map(|local| valid(Some(local), "0"));
}

/// Whether libphonenumber knows `country_code` (`62`, `1`, `44`) as a calling code.
pub fn is_calling_code(country_code: &str) -> bool {
    region(country_code).is_some()
}

/// The main region of a calling code: `1` is the United States, `44` the United
/// Kingdom.
fn region(country_code: &str) -> Option<Id> {
    let code: u16 = country_code.parse().ok()?;
    DATABASE.region(&code)?.first()?.parse().ok()
}

/// Normalises a recipient. A number with `+` or `00` is international; any other is
/// first read as a local number of `default_country_code` (with or without its
/// trunk `0`, or already starting with the country code), and only when that is no
/// valid number as an international number without its `+`, as WhatsApp's own
/// `wa.me` links write them.
pub fn normalize_recipient(input: &str, default_country_code: &str) -> Result<Jid, PhoneError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(PhoneError::Empty);
    }
    if let Some((user, server)) = input.split_once('@') {
        return parse_jid(user, server);
    }
    let digits = phone_digits(input)?;
    if digits.trim_start_matches('+').len() > MAX_WRITTEN_DIGITS {
        return Err(PhoneError::NotANumber {
            digits: digits.trim_start_matches('+').len(),
            country_code: default_country_code.to_owned(),
        });
    }
    let international = digits
        .strip_prefix('+')
        .or_else(|| digits.strip_prefix("00"));
    let number = match international {
        Some(rest) => {
            if rest.is_empty() || rest.starts_with('0') {
                return Err(PhoneError::MissingCountryCode);
            }
            valid(None, rest).ok_or(PhoneError::NotAnInternationalNumber { digits: rest.len() })?
        }
        None => region(default_country_code)
            .and_then(|local| valid(Some(local), &digits))
            .or_else(|| valid(None, &digits))
            .ok_or_else(|| PhoneError::NotANumber {
                digits: digits.len(),
                country_code: default_country_code.to_owned(),
            })?,
    };
    let user = format!("{}{}", number.code().value(), number.national().value());
    if !(MIN_JID_DIGITS..=MAX_JID_DIGITS).contains(&user.len()) {
        return Err(PhoneError::NotANumber {
            digits: digits.len(),
            country_code: default_country_code.to_owned(),
        });
    }
    Ok(Jid::User(user))
}

/// `digits` as a valid number: a local one of `region`, or (without a region) one
/// that starts with its country code.
fn valid(region: Option<Id>, digits: &str) -> Option<PhoneNumber> {
    let text = match region {
        Some(_) => digits.to_owned(),
        None => format!("+{digits}"),
    };
    phonenumber::parse(region, text)
        .ok()
        .filter(PhoneNumber::is_valid)
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

fn parse_jid(user: &str, server: &str) -> Result<Jid, PhoneError> {
    // A device suffix (`628…:12@s.whatsapp.net`) addresses one device; the person is
    // the part before it.
    let user = user.split(':').next().unwrap_or_default();
    match server.to_ascii_lowercase().as_str() {
        // `c.us` is what whatsapp-web.js wrote; it is the same person.
        USER_SERVER | "c.us" => {
            if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PhoneError::InvalidJid);
            }
            if !(MIN_JID_DIGITS..=MAX_JID_DIGITS).contains(&user.len()) {
                return Err(PhoneError::WrongJidLength(user.len()));
            }
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
                Err(PhoneError::InvalidJid)
            }
        }
        _ => Err(PhoneError::InvalidJid),
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

    /// The forms people write, each with the JID it must become or the error it
    /// must give; country code 62 unless the row says otherwise.
    #[test]
    fn normalises_the_forms_people_write() {
        use PhoneError::*;
        let not_a_number = |digits| NotANumber {
            digits,
            country_code: "62".into(),
        };
        let user = |digits: &str| Ok(format!("{digits}@s.whatsapp.net"));
        let table: Vec<(&str, Result<String, PhoneError>)> = vec![
            // Local, with the trunk 0, any separators.
            ("081234567890", user("6281234567890")),
            ("0812-3456-789", user("628123456789")),
            ("0812 3456 7890", user("6281234567890")),
            ("(0812) 3456-7890", user("6281234567890")),
            ("0812.3456.7890", user("6281234567890")),
            ("  081234567890  ", user("6281234567890")),
            ("0812\u{a0}3456\u{a0}7890", user("6281234567890")),
            // Local without the trunk 0, as a spreadsheet keeps a number it read as
            // a number: Indonesian, not the Japanese +81 234 567 890.
            ("812-3456-7890", user("6281234567890")),
            ("81234567890", user("6281234567890")),
            // With the country code: +62, 0062, bare 62, the trunk 0 kept after it.
            ("+62 812-3456-7890", user("6281234567890")),
            ("+6281234567890", user("6281234567890")),
            ("0062 812 3456 7890", user("6281234567890")),
            ("006281234567890", user("6281234567890")),
            ("6281234567890", user("6281234567890")),
            ("+62 0812 3456 7890", user("6281234567890")),
            ("+62 (0)812 3456 7890", user("6281234567890")),
            // Landlines are numbers too (WhatsApp Business runs on some).
            ("021-5550123", user("62215550123")),
            ("(022) 2500 935", user("62222500935")),
            // Foreign numbers, with + or as wa.me writes them.
            ("+1 650-253-0000", user("16502530000")),
            ("+44 20 7946 0958", user("442079460958")),
            ("+60 12-345 6789", user("60123456789")),
            ("+65 9123 4567", user("6591234567")),
            ("+81 90-1234-5678", user("819012345678")),
            ("447911123456", user("447911123456")),
            // JIDs.
            ("6281234567890@s.whatsapp.net", user("6281234567890")),
            ("6281234567890@S.WhatsApp.Net", user("6281234567890")),
            ("6281234567890@c.us", user("6281234567890")),
            ("6281234567890:12@s.whatsapp.net", user("6281234567890")),
            (
                "120363025246125486@g.us",
                Ok("120363025246125486@g.us".into()),
            ),
            (
                "6281234567890-1600000000@g.us",
                Ok("6281234567890-1600000000@g.us".into()),
            ),
            // Too short and too long, by Indonesia's numbering plan.
            ("0812", Err(not_a_number(4))),
            ("0812-345", Err(not_a_number(7))),
            ("12345", Err(not_a_number(5))),
            ("0812 3456 7890 1234", Err(not_a_number(16))),
            (
                "+62 812 3456 7890 1234",
                Err(NotAnInternationalNumber { digits: 17 }),
            ),
            ("+62 812", Err(NotAnInternationalNumber { digits: 5 })),
            (
                "+999 1234 5678",
                Err(NotAnInternationalNumber { digits: 11 }),
            ),
            // Not a number at all.
            ("", Err(Empty)),
            ("   ", Err(Empty)),
            ("abc", Err(InvalidCharacter('a'))),
            ("0812-3456-789x", Err(InvalidCharacter('x'))),
            ("62+81234567890", Err(InvalidCharacter('+'))),
            ("++6281234567890", Err(InvalidCharacter('+'))),
            ("0812/3456/7890", Err(InvalidCharacter('/'))),
            ("٠٨١٢٣٤٥٦٧٨٩", Err(InvalidCharacter('٠'))),
            ("+", Err(MissingCountryCode)),
            ("+0812345678", Err(MissingCountryCode)),
            ("user@example.com", Err(InvalidJid)),
            ("abc@s.whatsapp.net", Err(InvalidJid)),
            ("@g.us", Err(InvalidJid)),
            ("12-@g.us", Err(InvalidJid)),
            ("123@s.whatsapp.net", Err(WrongJidLength(3))),
            // Valid by the plans and normalised to a JID that normalises to itself.
            ("2781000", user("2781000")),
        ];
        for (input, expected) in &table {
            let got = normalize_recipient(input, "62").map(|jid| jid.to_string());
            assert_eq!(&got, expected, "input {input:?}");
        }
    }

    #[test]
    fn no_error_repeats_the_recipient() {
        for input in [
            "0812-3456",
            "user@6281234567890.example",
            "+62 812",
            "6281234567890@x",
        ] {
            let error = normalize_recipient(input, "62").unwrap_err().to_string();
            assert!(!error.contains("3456"), "{input:?}: {error}");
            assert!(!error.contains("6281234567890"), "{input:?}: {error}");
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

        /// The canonical shape: a person is 7 to 15 digits at `s.whatsapp.net`, a
        /// group is digits joined by `-` at `g.us`.
        fn assert_canonical(jid: &Jid) -> Result<(), TestCaseError> {
            let text = jid.to_string();
            match jid {
                Jid::User(user) => {
                    prop_assert!(user.bytes().all(|b| b.is_ascii_digit()), "{}", text);
                    prop_assert!(
                        (MIN_JID_DIGITS..=MAX_JID_DIGITS).contains(&user.len()),
                        "{}",
                        text
                    );
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
                let from_plus = normalize_recipient(&plus, "62");
                // One number, one answer: valid in both forms or in neither.
                prop_assert_eq!(from_local.is_ok(), from_plus.is_ok(), "{} vs {}", local, plus);
                if let Ok(jid) = from_local {
                    prop_assert_eq!(&jid, &Jid::User(bare.clone()));
                    prop_assert_eq!(from_plus, Ok(jid.clone()));
                    prop_assert_eq!(normalize_recipient(&bare, "62"), Ok(jid));
                }
            }
        }
    }
}
