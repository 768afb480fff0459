//! Prompt → token ids with the bundle's tokenizer.json, after the family's prompt cleaning (`text_encoder.prompt_clean`)
//! and template (`text_encoder.template`). Truncation is done here (not by the tokenizer) so the original length is
//! known: a truncated prompt keeps its first `limit - k` tokens and the `k` special tokens the tokenizer appends at
//! the end (T5: `</s>`, k = 1; Llama's BOS-only: k = 0), which is exactly what the tokenizer's own LongestFirst
//! truncation produces for a single sequence.

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
    /// Special tokens the tokenizer appends after the text.
    tail: usize,
    prepare: Box<dyn Fn(&str) -> String + Send + Sync>,
}

impl Tokenizer {
    /// Loads tokenizer.json; prompts become `prepare(prompt)` and at most `max_tokens` tokens.
    pub fn load(
        path: &Path,
        max_tokens: usize,
        prepare: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Result<Self, Error> {
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
        let probe = inner.encode("a", true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let tail = probe.get_special_tokens_mask().iter().rev().take_while(|&&m| m == 1).count();
        if tail >= max_tokens {
            return Err(Error::Tokenizer(format!(
                "{}: {tail} trailing special tokens fill max_tokens",
                path.display()
            )));
        }
        Ok(Self { inner, max_tokens, pad_id, tail, prepare: Box::new(prepare) })
    }

    /// The id rows are padded with.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Tokenizes one prompt; `reject` refuses (instead of truncating) prompts over max_tokens.
    pub fn tokenize(&self, index: usize, prompt: &str, reject: bool) -> Result<Tokens, Error> {
        let prompt = (self.prepare)(prompt);
        let enc = self.inner.encode(prompt, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        let original = ids.len();
        if original <= self.max_tokens {
            return Ok(Tokens { ids, truncated: false, original });
        }
        if reject {
            return Err(Error::PromptTooLong { index, tokens: original, max: self.max_tokens });
        }
        let tail = ids.split_off(original - self.tail);
        ids.truncate(self.max_tokens - self.tail);
        ids.extend(tail);
        Ok(Tokens { ids, truncated: true, original })
    }
}
