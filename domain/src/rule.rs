//! The validation rule: content passes when it is at least [`MIN_CHARS`] characters long and
//! contains at least one digit.
//!
//! How non-ASCII text is counted, exactly:
//! - A *character* is a Unicode scalar value (a Rust `char`), counted on the content as
//!   submitted: no trimming, no normalisation. "héllo" written with a precomposed `é` is five
//!   characters; written with `e` + a combining accent it is six. An emoji made of several code
//!   points joined by ZWJ counts each of them. Bytes are never counted.
//! - A *digit* is one of the ASCII digits `0`..=`9`. Other numerals (Arabic-Indic `٣`,
//!   full-width `３`, `½`, Roman `Ⅻ`) are not digits for this rule, so the verdict never depends
//!   on a Unicode table version.

use serde::{Deserialize, Serialize};

use crate::FailureReason;

/// Minimum length in characters (Unicode scalar values).
pub const MIN_CHARS: usize = 10;

/// The outcome of judging one piece of content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Passed,
    /// Every rule that failed, in a fixed order (too short before no digit).
    Failed(Vec<FailureReason>),
}

/// Judges content. Deterministic: the same content always gets the same verdict, which is
/// what lets a validator that re-processes an event after a crash emit the identical verdict.
pub fn judge(content: &str) -> Verdict {
    let mut reasons = Vec::new();
    if char_count(content) < MIN_CHARS {
        reasons.push(FailureReason::TooShort);
    }
    if !content.chars().any(|c| c.is_ascii_digit()) {
        reasons.push(FailureReason::NoDigit);
    }
    if reasons.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(reasons)
    }
}

/// The length the rule measures: Unicode scalar values, as submitted.
pub fn char_count(content: &str) -> usize {
    content.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureReason::*;

    #[test]
    fn passes_with_ten_chars_and_a_digit() {
        assert_eq!(judge("abcdefghi1"), Verdict::Passed);
        assert_eq!(judge("1234567890"), Verdict::Passed);
    }

    #[test]
    fn reports_every_failed_rule_in_order() {
        assert_eq!(judge("abcdefghi"), Verdict::Failed(vec![TooShort, NoDigit]));
        assert_eq!(judge("abc1"), Verdict::Failed(vec![TooShort]));
        assert_eq!(judge("abcdefghij"), Verdict::Failed(vec![NoDigit]));
        assert_eq!(judge(""), Verdict::Failed(vec![TooShort, NoDigit]));
    }

    #[test]
    fn counts_unicode_scalar_values_not_bytes() {
        // 9 precomposed letters (18 bytes) + a digit: 10 characters.
        assert_eq!(judge("ééééééééé1"), Verdict::Passed);
        // 8 chars of 4 bytes each + digit = 9 characters, 33 bytes: too short.
        assert_eq!(judge("😀😀😀😀😀😀😀😀1"), Verdict::Failed(vec![TooShort]));
        // e + combining acute counts as two characters: these look alike but differ.
        assert_eq!(judge("e\u{301}e\u{301}e\u{301}e\u{301}x1"), Verdict::Passed);
        assert_eq!(judge("\u{e9}\u{e9}\u{e9}\u{e9}x1"), Verdict::Failed(vec![TooShort]));
    }

    #[test]
    fn only_ascii_digits_count() {
        assert_eq!(judge("abcdefghi٣"), Verdict::Failed(vec![NoDigit]));
        assert_eq!(judge("abcdefghi３"), Verdict::Failed(vec![NoDigit]));
        assert_eq!(judge("abcdefghi½"), Verdict::Failed(vec![NoDigit]));
    }

    #[test]
    fn whitespace_counts_as_characters() {
        assert_eq!(judge("         1"), Verdict::Passed);
    }
}
