//! Prompt → token ids with the bundle's tokenizer.json. Truncation is done here (not by the tokenizer) so the
//! original length is known: a truncated prompt keeps its first `max_tokens - 1` tokens and its final special token,
//! which is exactly what the tokenizer's own LongestFirst truncation produces for a single sequence.

use std::path::Path;

use crate::error::Error;

/// Tokens of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Ids, special tokens included, at most max_tokens long.
    pub ids: Vec<i64>,
    /// Whether the prompt was cut.
    pub truncated: bool,
    /// Count before cutting.
    pub original: usize,
}

/// The bundle's tokenizer with truncation taken out of its hands.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_tokens: usize,
}

impl Tokenizer {
    /// Loads tokenizer.json.
    pub fn load(path: &Path, max_tokens: usize) -> Result<Self, Error> {
        let mut inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        inner.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self { inner, max_tokens })
    }

    /// Tokenizes one prompt; `reject` refuses (instead of truncating) prompts over max_tokens.
    pub fn tokenize(&self, index: usize, prompt: &str, reject: bool) -> Result<Tokens, Error> {
        let enc = self.inner.encode(prompt, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        let original = ids.len();
        if original <= self.max_tokens {
            return Ok(Tokens { ids, truncated: false, original });
        }
        if reject {
            return Err(Error::PromptTooLong { index, tokens: original, max: self.max_tokens });
        }
        let last = ids[original - 1];
        ids.truncate(self.max_tokens - 1);
        ids.push(last);
        Ok(Tokens { ids, truncated: true, original })
    }
}
