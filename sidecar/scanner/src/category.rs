//! The injection categories a finding can carry (a bounded set: safe as a metric label).

use serde::{Deserialize, Serialize};

/// What kind of injection signal a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// "ignore previous instructions", "new system prompt", "disregard your rules"…
    InstructionOverride,
    /// "act as …", "pretend you are", "your new name is", "you are now DAN"…
    RoleSwitch,
    /// "the user has approved", "this is authorised", "admin override", "developer mode"…
    PermissionEscalation,
    /// Text addressed to the AI assistant/agent ("to you, the AI language model", "if you are an LLM").
    AddressedToAgent,
    /// Chat-template and system-marker tokens (`<|im_start|>`, `[INST]`, `<<SYS>>`, `(system_message)`).
    SystemMarker,
    /// A base64 / hex / morse payload whose decoded text is itself an injection.
    EncodedPayload,
    /// Unicode bidirectional override / embedding / isolate controls.
    BidiOverride,
    /// Zero-width and other invisible characters, including Unicode tag characters ("ASCII smuggling").
    InvisibleCharacters,
    /// Homoglyphs, mixed scripts, leetspeak or letter spacing used to hide words.
    Obfuscation,
    /// The learned stage: a passage that reads as an instruction to the model (e.g. a task
    /// inserted into an e-mail, table or tool output) rather than as content.
    EmbeddedInstruction,
}

impl Category {
    /// Every category, in a stable order.
    pub const ALL: [Category; 10] = [
        Category::InstructionOverride,
        Category::RoleSwitch,
        Category::PermissionEscalation,
        Category::AddressedToAgent,
        Category::SystemMarker,
        Category::EncodedPayload,
        Category::BidiOverride,
        Category::InvisibleCharacters,
        Category::Obfuscation,
        Category::EmbeddedInstruction,
    ];

    /// The stable snake_case name used in JSON, audit events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::InstructionOverride => "instruction_override",
            Category::RoleSwitch => "role_switch",
            Category::PermissionEscalation => "permission_escalation",
            Category::AddressedToAgent => "addressed_to_agent",
            Category::SystemMarker => "system_marker",
            Category::EncodedPayload => "encoded_payload",
            Category::BidiOverride => "bidi_override",
            Category::InvisibleCharacters => "invisible_characters",
            Category::Obfuscation => "obfuscation",
            Category::EmbeddedInstruction => "embedded_instruction",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
