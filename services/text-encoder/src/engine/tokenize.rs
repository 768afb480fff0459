//! Prompt → token ids with the bundle's tokenizer.json, after the family's prompt cleaning (`text_encoder.prompt_clean`).
//! Truncation is done here (not by the tokenizer) so the
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
    pad_id: i64,
    clean: vidmesh_model::PromptClean,
}

impl Tokenizer {
    /// Loads tokenizer.json.
    pub fn load(path: &Path, max_tokens: usize, clean: vidmesh_model::PromptClean) -> Result<Self, Error> {
        let mut inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        // The pad id the tokenizer itself would pad with (its padding config, else a `<pad>`/`[PAD]` token, else 0).
        let pad_id = inner
            .get_padding()
            .map(|p| i64::from(p.pad_id))
            .or_else(|| ["<pad>", "[PAD]"].iter().find_map(|t| inner.token_to_id(t)).map(i64::from))
            .unwrap_or(0);
        inner.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self { inner, max_tokens, pad_id, clean })
    }

    /// The id rows are padded with.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Tokenizes one prompt; `reject` refuses (instead of truncating) prompts over max_tokens.
    pub fn tokenize(&self, index: usize, prompt: &str, reject: bool) -> Result<Tokens, Error> {
        let prompt = self.clean.apply(prompt);
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
