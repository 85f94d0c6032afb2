//! IronClaw prompt-injection scanner and [UNTRUSTED] content tagging.
