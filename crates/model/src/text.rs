//! The one rule for text a caller sends as a prompt, applied by the gateway (prompt and negative prompt, over gRPC
//! and HTTP) and by the text-encoder (every prompt it is asked to encode), so both refuse the same text with the
//! same message.
//!
//! Invariants: text that passes [`check_text`] holds no control character other than tab, newline and carriage
//! return (no NUL, no other C0 control, no DEL, no C1 control); text that passes [`check_prompt`] also holds at
//! least one character that is neither whitespace nor a control character. Everything else — any language, emoji,
//! punctuation — passes.

/// Whether `c` is refused in a prompt: a control character (Unicode category Cc) other than `\t`, `\n`, `\r`.
fn refused(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Refuses text holding a NUL or another control character (tab, newline and carriage return are text). `name` is
/// the field as the caller knows it (e.g. `prompt`, `negative_prompt`, `prompts[2]`); empty text passes.
pub fn check_text(name: &str, text: &str) -> Result<(), String> {
    let Some((at, c)) = text.char_indices().find(|&(_, c)| refused(c)) else { return Ok(()) };
    let what = if c == '\0' { "a NUL byte".to_string() } else { format!("the control character U+{:04X}", c as u32) };
    Err(format!(
        "{name} holds {what} at byte {at}; send plain text (control characters other than tab, newline and carriage \
         return are refused)"
    ))
}

/// [`check_text`], and refuses text with nothing in it but whitespace: a prompt must describe something.
pub fn check_prompt(name: &str, text: &str) -> Result<(), String> {
    check_text(name, text)?;
    if text.chars().all(char::is_whitespace) {
        return Err(format!("{name} is required: it is empty or only whitespace; describe the video to make"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_in_any_script_passes() {
        for ok in ["a red circle", "une chatte noire\tqui court\r\n", "雪の中の赤い車 🚗", "x"] {
            assert_eq!(check_prompt("prompt", ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_text("negative_prompt", ""), Ok(()));
    }

    #[test]
    fn nul_and_control_characters_are_refused_with_where() {
        let e = check_prompt("prompt", "\0").unwrap_err();
        assert!(e.starts_with("prompt holds a NUL byte at byte 0"), "{e}");
        let e = check_text("negative_prompt", "blurry\u{1b}[31m").unwrap_err();
        assert!(e.contains("negative_prompt holds the control character U+001B at byte 6"), "{e}");
        for bad in ["a\u{7f}", "a\u{85}b", "\u{8}"] {
            assert!(check_text("prompt", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_prompt_needs_more_than_whitespace() {
        for blank in ["", " ", "\n\t\r ", "\u{3000}"] {
            let e = check_prompt("prompt", blank).unwrap_err();
            assert!(e.contains("prompt is required"), "{blank:?}: {e}");
        }
    }
}
