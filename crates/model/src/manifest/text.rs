//! `[text_encoder]`: the encoder graph, its tokenizer and how prompts are cleaned, padded and masked.

use serde::{Deserialize, Serialize};

use super::Component;

/// `[text_encoder]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoderSpec {
    /// The ONNX graph.
    #[serde(flatten)]
    pub component: Component,
    /// tokenizer.json (Hugging Face tokenizers format).
    pub tokenizer: String,
    /// sha256 of the tokenizer file.
    pub tokenizer_sha256: String,
    /// Tokens per prompt, special tokens included; longer prompts are truncated or refused.
    pub max_tokens: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// How prompts are cleaned before tokenizing, as the family's pipeline does (format 2).
    #[serde(default)]
    pub prompt_clean: PromptClean,
    /// How prompts are padded before the encoder (format 2).
    #[serde(default)]
    pub padding: Padding,
    /// Whether the encoder sees the real attention mask (`false`: all ones, padding attended).
    #[serde(default = "yes")]
    pub encoder_mask: bool,
    /// Whether states past the real length are zeros when the DiT sees them (`false`: the encoder's padding
    /// states are kept).
    #[serde(default = "yes")]
    pub zero_pad_states: bool,
    /// Whether the DiT takes the text mask.
    #[serde(default = "yes")]
    pub dit_mask: bool,
    /// The graph's tensor names.
    #[serde(default)]
    pub names: TextEncoderNames,
}

fn yes() -> bool {
    true
}

/// `text_encoder.prompt_clean`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptClean {
    /// The prompt as given.
    #[default]
    None,
    /// diffusers' Wan `prompt_clean`: HTML entities unescaped twice, curly quotes made straight (as ftfy does),
    /// runs of whitespace collapsed to one space, ends trimmed. ftfy's repair of mis-decoded text (mojibake) is
    /// not reproduced.
    Wan,
}

impl PromptClean {
    /// Applies the cleaning.
    pub fn apply(self, prompt: &str) -> String {
        match self {
            Self::None => prompt.to_string(),
            Self::Wan => {
                let once = html_escape::decode_html_entities(prompt);
                let twice = html_escape::decode_html_entities(&once);
                let straight: String = twice
                    .chars()
                    .map(|c| match c {
                        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => '\'',
                        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' => '"',
                        c => c,
                    })
                    .collect();
                straight.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// `text_encoder.padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Pad a batch to its longest prompt.
    #[default]
    Longest,
    /// Pad every prompt to `max_tokens` with the tokenizer's pad id.
    MaxLength,
}

/// `text_encoder.names`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextEncoderNames {
    /// Token ids input.
    pub input_ids: String,
    /// Attention mask input.
    pub attention_mask: String,
    /// Hidden states output.
    pub hidden_states: String,
}

impl Default for TextEncoderNames {
    fn default() -> Self {
        Self {
            input_ids: "input_ids".into(),
            attention_mask: "attention_mask".into(),
            hidden_states: "hidden_states".into(),
        }
    }
}
