//! The rules a message text must pass: the same at the dispatcher's door, on a
//! Firestore document and at the gateway, so no job is accepted that the gateway
//! would refuse.

/// WhatsApp's own limit on a text message.
pub const MAX_MESSAGE_CHARS: usize = 65_536;

/// A message must have visible text and fit WhatsApp's limit.
pub fn check_message(message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("is empty".into());
    }
    if message
        .chars()
        .all(|c| c.is_whitespace() || is_invisible(c))
    {
        return Err(
            "has no visible character (only spaces, zero-width or control characters)".into(),
        );
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(format!(
            "has {chars} characters; at most {MAX_MESSAGE_CHARS} are allowed"
        ));
    }
    Ok(())
}

/// The text of a job with media is its caption: a blank one is sent without a
/// caption; any other must pass as a message.
pub fn check_caption(caption: &str) -> Result<(), String> {
    if caption.trim().is_empty() {
        return Ok(());
    }
    check_message(caption)
}

/// Characters that take no space on a phone's screen: controls, zero-width
/// joiners and spaces, direction marks, the byte-order mark and the soft hyphen.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caption_may_be_blank_but_not_too_long() {
        assert!(check_caption("").is_ok());
        assert!(check_caption("  \n").is_ok());
        assert!(check_caption("Rekap Oktober").is_ok());
        assert!(check_caption(&"x".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
        assert!(check_caption("\u{200b}x").is_ok());
    }

    #[test]
    fn a_message_needs_a_visible_character_and_fits_the_limit() {
        assert_eq!(check_message("   ").unwrap_err(), "is empty");
        assert!(
            check_message("\u{200b}\u{feff}")
                .unwrap_err()
                .starts_with("has no visible")
        );
        assert!(check_message(&"é".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert_eq!(
            check_message(&"x".repeat(MAX_MESSAGE_CHARS + 1)).unwrap_err(),
            "has 65537 characters; at most 65536 are allowed"
        );
        for ok in ["❤️", "a\u{200b}b", "مرحبا"] {
            assert!(check_message(ok).is_ok(), "{ok:?}");
        }
    }
}
