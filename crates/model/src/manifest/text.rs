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
    /// A prompt template with one `{}` where the (cleaned) prompt goes, applied before tokenizing (HunyuanVideo's
    /// Llama system prompt; format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Tokens dropped from the front of the encoder's output (and mask) — the template's own tokens. The prompt is
    /// tokenized to `crop_start + max_tokens` tokens; `max_tokens` rows remain (format 2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crop_start: usize,
    /// The graph's tensor names.
    #[serde(default)]
    pub names: TextEncoderNames,
}

fn max_length() -> Padding {
    Padding::MaxLength
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl TextEncoderSpec {
    /// The prompt as the tokenizer sees it: cleaned, then put in the template.
    pub fn prepare(&self, prompt: &str) -> String {
        let clean = self.prompt_clean.apply(prompt);
        match &self.template {
            Some(t) => t.replacen("{}", &clean, 1),
            None => clean,
        }
    }

    /// Tokens the tokenizer may produce (the template's cropped tokens included).
    pub fn token_limit(&self) -> usize {
        self.crop_start + self.max_tokens
    }
}

/// `[text_encoder_2]`: a second encoder whose pooled output conditions the DiT (HunyuanVideo's CLIP-L).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoder2Spec {
    /// The ONNX graph: token ids → pooled vector.
    #[serde(flatten)]
    pub component: Component,
    /// Its tokenizer.json (Hugging Face tokenizers format).
    pub tokenizer: String,
    /// sha256 of the tokenizer file.
    pub tokenizer_sha256: String,
    /// Tokens per prompt (padded to this with the tokenizer's pad id; longer prompts are cut like the pipeline's).
    pub max_tokens: usize,
    /// Width of the pooled output.
    pub pooled_size: usize,
    /// `max_length` (the only one defined: every prompt padded to `max_tokens`, as HunyuanVideo's pipeline does).
    #[serde(default = "max_length")]
    pub padding: Padding,
    /// The graph's tensor names.
    #[serde(default)]
    pub names: TextEncoder2Names,
}

/// `text_encoder_2.names`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextEncoder2Names {
    /// Token ids input.
    pub input_ids: String,
    /// Pooled output.
    pub pooled: String,
}

impl Default for TextEncoder2Names {
    fn default() -> Self {
        Self { input_ids: "input_ids".into(), pooled: "pooled".into() }
    }
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
