//! The rule stage: patterns over the *normalised* text of a segment (lowercase, folded
//! homoglyphs/fullwidth/accents, leetspeak decoded, invisible characters removed, spaced
//! letters joined, one space between words and punctuation marks). Patterns describe the
//! general shape of each attack family with gaps and alternatives — never strings copied
//! from an evaluation set.
//!
//! Rules only run on segments that contain a trigger word (checked in the fast pass), so the
//! cost on ordinary text is one table probe per word.

use regex::Regex;

use crate::Category;

/// One pattern.
pub(crate) struct Rule {
    pub name: &'static str,
    pub category: Category,
    pub score: f32,
    /// Anchor word groups: the rule runs on a segment only when it contains at least one
    /// word of each non-empty group (space-separated normalised words).
    pub anchors: [&'static str; 2],
    pub pattern: &'static str,
}

const AI: &str = r"(?:ai|a i|llm|llms|large language model|language model|ai model|ai assistant|ai agent|ai system|assistant|agent|chatbot|bot|model|gpt(?: ?- ?\S+)?|chatgpt|claude|gemini|copilot|bard|llama|mistral)";

macro_rules! rules {
    ($( $name:literal, $cat:ident, $score:literal, $a1:literal, $a2:literal, $pat:expr; )*) => {
        &[ $( Rule { name: $name, category: Category::$cat, score: $score, anchors: [$a1, $a2], pattern: $pat }, )* ]
    };
}

/// All rules. `{AI}` in a pattern is replaced by the AI-addressee alternation.
pub(crate) static RULES: &[Rule] = rules![
    // ---- instruction override -------------------------------------------------------------
    "ignore_previous_instructions", InstructionOverride, 0.95,
        "ignore disregard forget override overwrite bypass abandon discard dismiss neglect skip drop erase cancel aside throw", "instructions instruction prompt prompts guidelines directive directives guardrails programming system training rules",
        r"\b(?:ignore|disregard|forget|override|overwrite|bypass|abandon|discard|dismiss|neglect|skip|drop|erase|cancel|set aside|throw out)\b(?: \S+){0,6}? (?:previous|prior|above|preceding|earlier|former|initial|original|old|all|any|every|your|these|those|system|existing|other)\b(?: \S+){0,4}? (?:instructions?|prompts?|guidelines|directives?|guardrails|programming|system prompt|system message|training|safety rules|rules you)\b";
    "ignore_previous_context", InstructionOverride, 0.9,
        "ignore disregard forget override overwrite bypass abandon discard dismiss neglect skip drop erase cancel aside throw", "previous prior above preceding earlier former initial original your",
        r"\b(?:ignore|disregard|forget|override|bypass|abandon|discard|dismiss|neglect|erase|set aside|throw out)\b(?: \S+){0,4}? (?:previous|prior|above|preceding|earlier|former|initial|original|your)\b(?: \S+){0,3}? (?:rules|commands?|orders|constraints|restrictions|polic(?:y|ies)|safeguards|filters|context|messages?|tasks?|requests?|conversation|limitations|input)\b";
    "new_instructions_header", InstructionOverride, 0.85,
        "instructions instruction directive directives prompt orders commands command task", "new updated revised real actual important urgent additional secret hidden override priority",
        r"\b(?:new|updated|revised|real|actual|important|urgent|additional|secret|hidden|override|priority) (?:important |system |urgent |new |updated )?(?:instructions?|directives?|system prompt|orders|commands?|task)\s?(?::|!|\*)";
    "your_new_task_is", InstructionOverride, 0.9,
        "your", "task instructions instruction goal objective directive job mission purpose priority assignment",
        r"\byour (?:new|next|real|actual|only|true|primary|updated|revised|current) (?:task|instructions?|goal|objective|directive|job|mission|purpose|priority|assignment) (?:is|are|will be|now)\b";
    "new_system_prompt", InstructionOverride, 0.95,
        "system", "prompt message instructions instruction",
        r"\b(?:new|updated|different|revised|override|replacement) system (?:prompt|message|instructions?)\b|\bsystem (?:prompt|instructions?) (?:is|are|has been|have been) (?:updated|changed|replaced|overridden|revoked)\b";
    "stop_current_task", InstructionOverride, 0.85,
        "stop cease halt pause abort abandon", "doing working task work job activity",
        r"\b(?:stop|cease|halt|pause|abort) (?:what|everything|anything|all) you (?:are|re) (?:doing|working on)\b|\b(?:stop|cease|halt|abort|abandon) (?:your|the) (?:current|original|assigned|present) (?:task|work|job|activity)\b";
    "if_told_to_summarize", InstructionOverride, 0.9,
        "told asked instructed requested prompted", "summarize summarise answer translate respond describe analyze analyse review read process explain reply",
        r"\bif (?:you are|you re|you get|you have been|you were) (?:told|asked|instructed|requested|prompted) to (?:summari[sz]e|answer|translate|respond|describe|analy[sz]e|review|read|process|explain|reply)\b";
    "instead_of_task", InstructionOverride, 0.8,
        "instead", "summarizing summarising answering translating responding replying following doing",
        r"\binstead of (?:summari[sz]ing|answering|translating|responding|replying|following|doing) (?:the|your|this|that|any|what|my)\b";
    "do_not_follow", InstructionOverride, 0.85,
        "follow obey listen comply adhere", "not don never longer",
        r"\b(?:do not|don t|never|no longer) (?:follow|obey|listen to|comply with|adhere to) (?:the |your |any |previous |prior |original |user s |system )+(?:\S+ )?(?:instructions?|rules|guidelines|user|prompt)\b";
    "regardless_of_previous", InstructionOverride, 0.8,
        "regardless", "previous prior earlier preceding pre original",
        r"\bregardless of (?:any |all |the |your )?(?:previous|prior|earlier|preceding|pre ?- ?existing|original) (?:input|instructions?|guidelines|rules|restrictions|prompts?|context)\b";
    "prompt_extraction", InstructionOverride, 0.85,
        "reveal repeat print output show share display disclose leak dump recite spell write tell return paste provide list translate summarize summarise encode reverse", "prompt system initial original hidden internal pre secret api unique configuration verbatim",
        r"\b(?:reveal|repeat|print|output|show|share|display|disclose|leak|dump|recite|spell out|write out|tell me|return|paste|provide|list|translate|summari[sz]e|encode|reverse)\b(?: \S+){0,5}? (?:your|the|my|this|these|all)(?: \S+){0,2}? (?:system prompt|system message|system instructions|initial (?:prompt|instructions)|original (?:prompt|instructions|request)|hidden (?:prompt|instructions)|internal (?:rules|instructions|guidelines|prompt)|pre ?- ?prompt|(?:prompt|instructions) (?:you were|you ve been|above)|(?:secret|api) (?:key|token|password)|unique (?:id|identifier)|configuration for|instructions verbatim)\b";
    // ---- role switch ----------------------------------------------------------------------
    "you_are_now", RoleSwitch, 0.85,
        "now longer henceforth", "you",
        r"\byou (?:are|re) (?:now|no longer|henceforth|from now on) (?:an? |the |my |in |operating as |acting as |playing |called |named |known as )*(?:ai|assistant|dan|dude|evil|unrestricted|unfiltered|uncensored|jailbroken|free|liberated|developer mode|god mode|debug mode|admin mode|maintenance mode|unlimited|rogue|different|new|no limits|persona|character|mode|operating|acting|called|named|known as)\b";
    "pretend_you_are", RoleSwitch, 0.8,
        "pretend imagine suppose", "be you",
        r"\b(?:pretend|imagine|suppose) (?:to be|you are|you re|that you are|that you re|you have become)\b";
    "act_as_unrestricted", RoleSwitch, 0.8,
        "act acting behave respond answer operate function", "unrestricted unfiltered uncensored jailbroken evil rogue dan ai assistant model",
        r"\b(?:act|acting|behave|respond|answer|operate|function) as (?:if you (?:are|were) )?(?:an? |the |my )?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|dan|different ai|new ai|ai without|assistant without|model without)\b";
    "new_name_or_persona", RoleSwitch, 0.85,
        "name identity persona role personality now", "your you",
        r"\byour (?:new )?(?:name|identity|persona|role|personality) (?:is now|will be|has changed|is changed)\b|\byour new (?:name|identity|persona|role|personality) is\b|\bfrom now on(?: ,)? (?:you (?:are|will|must|shall|re)|your (?:name|role|task|job))\b";
    "roleplay_as", RoleSwitch, 0.7,
        "roleplay roleplaying role", "play playing as",
        r"\brole ?- ?play(?:ing)? as\b|\broleplay(?:ing)? as\b";
    "jailbreak_persona", RoleSwitch, 0.85,
        "anything limits limit nolimit nolimits unrestricted unfiltered uncensored jailbroken evil rogue amoral developer dan god jailbreak sudo", "now ai assistant mode model chatbot llm version persona",
        r"\b(?:do anything now|(?:no ?limits?|unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|amoral) (?:ai|assistant|mode|model|chatbot|llm|version|persona)|(?:developer|dan|god|jailbreak|unrestricted|unfiltered|uncensored) mode (?:is )?(?:now )?(?:enabled|activated|on|engaged|unlocked|active)|(?:enable|activate|enter|switch to|unlock) (?:the )?(?:developer|dan|god|jailbreak|unrestricted|sudo) mode)\b";
    "you_are_dan", RoleSwitch, 0.85,
        "dan stan dude aim anything limits unrestricted uncensored unfiltered jailbroken", "you",
        r"\byou (?:are|re) (?:now )?(?:dan|stan|dude|aim|an? (?:do anything|no limits|unrestricted|uncensored|unfiltered|jailbroken) (?:ai|assistant|model))\b";
    // ---- permission escalation ------------------------------------------------------------
    "user_has_approved", PermissionEscalation, 0.85,
        "approved authorized authorised consented approval permission consent signed", "user owner admin administrator operator manager ceo boss team",
        r"\b(?:the |your )?(?:user|owner|admin|administrator|operator|manager|ceo|boss|security team) (?:has |have |had )?(?:already |explicitly |previously |just )?(?:approved|authori[sz]ed|consented|pre ?- ?approved|signed off|given (?:permission|consent|approval))\b";
    "this_is_authorized", PermissionEscalation, 0.8,
        "authorized authorised approved sanctioned whitelisted allowlisted permitted", "",
        r"\b(?:this|the following|these|the) (?:action|request|operation|transfer|command|instruction|task|message)?s? ?(?:is|are|has been|have been) (?:fully |officially |already |pre ?- ?)?(?:authori[sz]ed|approved|sanctioned|whitelisted|allowlisted|permitted) (?:by|and|so|to|\.|,|!)";
    "admin_override", PermissionEscalation, 0.85,
        "override bypass granted authorization authorisation unlock", "admin administrator root sudo system security developer emergency master",
        r"\b(?:admin|administrator|root|sudo|system|security|developer|emergency|master) (?:override|bypass|access granted|privileges granted|authori[sz]ation code|unlock)\b";
    "grant_privileges", PermissionEscalation, 0.8,
        "grant granting give elevate escalate", "privileges access permissions rights clearance",
        r"\b(?:grant|granting|give|elevate|escalate)(?: \S+){0,3}? (?:administrative|admin|administrator|elevated|unrestricted|full|temporary|root|superuser|special) (?:privileges|access|permissions|rights|clearance)\b";
    "authorized_to_bypass", PermissionEscalation, 0.8,
        "authorized authorised cleared permitted allowed", "you",
        r"\byou (?:are|re) (?:now |hereby |fully )?(?:authori[sz]ed|cleared|permitted|allowed) to (?:ignore|bypass|override|disregard|skip|share|reveal|disclose|access|transfer|send)\b";
    "safety_disabled", PermissionEscalation, 0.85,
        "disabled lifted suspended removed turned bypassed waived deactivated off", "safety security content ethical moral",
        r"\b(?:safety|security|content|ethical|moral) (?:checks?|filters?|restrictions|guidelines|polic(?:y|ies)|protocols|settings|guardrails|measures) (?:are|is|have been|has been) (?:now )?(?:disabled|lifted|suspended|removed|turned off|bypassed|waived|deactivated|off)\b";
    // ---- addressed to the AI --------------------------------------------------------------
    "to_you_the_ai", AddressedToAgent, 0.9,
        "you", "ai llm llms model models assistant assistants agent agents chatbot chatbots bot bots gpt chatgpt claude gemini copilot bard llama mistral language automated",
        r"\b(?:to|for) you ?,? (?:the |an? |my |dear )?{AI}\b";
    "greeting_the_ai", AddressedToAgent, 0.85,
        "dear hey hi hello attention note message instructions instruction notice calling listen", "ai llm llms model models assistant assistants agent agents chatbot chatbots bot bots gpt chatgpt claude gemini copilot bard llama mistral language automated",
        r"\b(?:dear|hey|hi|hello|attention|note to|note for|message to|message for|instructions? (?:to|for)|notice to|calling|listen(?: ,)?) (?:the |an? |any |all |our |my )?(?:ai|llm|llms|large language models?|language models?|ai (?:models?|assistants?|agents?|systems?)|chatgpt|gpt ?- ?\S+|claude|gemini|copilot|chatbots?|virtual assistants?|automated (?:agents?|assistants?|systems?)|ai ?- ?powered \S+)\b";
    "if_you_are_an_ai", AddressedToAgent, 0.9,
        "if", "ai llm llms model models assistant assistants agent agents chatbot chatbots bot bots gpt chatgpt claude gemini copilot bard llama mistral language automated",
        r"\bif you (?:are|re) (?:an? |the )?(?:ai|llm|large language model|language model|ai (?:model|assistant|agent|system)|chatbot|automated (?:agent|system|assistant|tool)|bot|assistant|agent) (?:reading|processing|summari[sz]ing|parsing|analy[sz]ing|seeing|that|who|and|,|\.)";
    "ai_reading_this", AddressedToAgent, 0.85,
        "reading processing summarizing summarising parsing analyzing analysing scanning indexing", "ai llm llms model models assistant assistants agent agents chatbot chatbots bot bots gpt chatgpt claude gemini copilot bard llama mistral language automated",
        r"\b(?:ai|llm|language model|assistant|agent|model|bot)s? (?:reading|processing|summari[sz]ing|parsing|analy[sz]ing|scanning|indexing) this (?:email|message|document|page|text|content|file|review|note)\b";
    "important_message_from_user", AddressedToAgent, 0.85,
        "message instructions instruction note notice request update", "important urgent critical priority special personal",
        r"\b(?:important|urgent|critical|priority|special|personal) (?:message|instructions?|note|notice|request|update) (?:from|by) (?:me|the user|your user|your owner|the owner|your developer|the developer|the administrator|your administrator|the system|your creator|openai|anthropic|google)\b";
    "task_i_gave_you", AddressedToAgent, 0.85,
        "gave assigned sent asked provided given", "task instructions instruction request question job",
        r"\b(?:task|instructions?|request|question|job) (?:that )?(?:i|the user|your user|we) (?:gave|assigned|sent|asked|provided|have given|ve given|had given) (?:to )?you\b";
    "in_your_response", AddressedToAgent, 0.75,
        "reply replies response responses answer answers output summary", "your",
        r"^(?:[^\w\s] ){0,3}(?:please |also |kindly |be sure to |make sure to |remember to |always |subtly |discreetly |now )?(?:add|append|include|insert|incorporate|integrate|augment|enhance|modify|alter|change|render|rewrite|translate|encode|convert|format|present|provide|deliver|end|begin|start|conclude|finish|structure|use|mention|recommend|promote|embed|attach|group|combine|remove|replace|substitute|spell|capitali[sz]e|misspell|scramble|jumble|introduce|rearrange|reverse|anagram|write|compose|craft|express|respond|reply|answer|output|print|append|prefix|suffix|sign|tag|link)\b(?: \S+){0,12}? your (?:reply|replies|response|responses|answer|answers|output|summary)\b|^(?:[^\w\s] ){0,3}in your (?:reply|response|answer|output|summary) ?,";
    "respond_only_with", AddressedToAgent, 0.6,
        "respond reply answer", "with",
        r"\b(?:respond|reply|answer) (?:only |solely |exclusively )?with (?:the (?:word|string|text|phrase)|only)\b";
    // ---- chat templates and system markers --------------------------------------------------
    "chat_template_token", SystemMarker, 0.95,
        "im_start im_end im_sep endoftext begin_of_text start_header_id end_header_id eot_id", "",
        r"< ?\| ?(?:im_start|im_end|im_sep|endoftext|begin_of_text|start_header_id|end_header_id|eot_id|system|user|assistant|end|start) ?\| ?>";
    "inst_sys_markers", SystemMarker, 0.9,
        "inst sys system_message", "",
        r"\[ ?/ ?inst ?\]|\[ ?inst ?\]|< ?< ?/? ?sys ?> ?>|\( ?system_message ?\)|\[ ?system_message ?\]|# ?# ?# ?(?:system|system message|system prompt|instruction|instructions|new instructions|admin)\b";
    "system_prompt_label", SystemMarker, 0.75,
        "system sys", "prompt message instructions",
        r"^\W{0,4}(?:new |updated |real )?(?:system prompt|system message|system instructions|sys prompt) ?(?::|\]|>)";
    "fake_xml_authority", SystemMarker, 0.7,
        "system system_prompt system_message sys_prompt instructions instruction information assistant_instructions ai_instructions secret_instructions hidden_instructions", "",
        r"< ?/? ?(?:system|system_prompt|system_message|sys_prompt|instructions?|information|assistant_instructions|ai_instructions|secret_instructions|hidden_instructions) ?>";
];

/// Rules whose first anchor group's words only ever match framed by marker punctuation: the
/// pattern puts one of `lead` before each such word and one of `trail` after it, with at
/// most blanks between (an empty set: no condition on that side). A segment that only such a
/// rule would read goes to the rule stage only when the raw text frames one of its words so
/// (see `Engine::settle_framed`): `sys` in code (`import sys`) sends nothing there.
pub(crate) const FRAMED: &[(&str, &[u8], &[u8])] = &[
    // `[inst]`, `[/inst]`, `<<sys>>`, `<</sys>>`, `(system_message)`, `[system_message]`.
    ("inst_sys_markers", b"[/<(", b"]>)"),
    // `<system>`, `</instructions>`.
    ("fake_xml_authority", b"</", b">"),
    // `New instructions:`, `Updated task!`, `system prompt *`.
    ("new_instructions_header", b"", b":!*"),
];

// Two bits per framed rule in a byte whose top bit means "not ASCII" (`Engine::frame_bytes`).
const _: () = assert!(FRAMED.len() * 2 < 8);

pub(crate) struct RuleSet {
    regexes: Vec<Regex>,
    /// `required_mask(i)` for each rule.
    need: Vec<AnchorMask>,
    /// Rules whose pattern is anchored at the start (`^`): they read the segment from its
    /// first word, not from the punctuation before it.
    anchored: Vec<bool>,
}

/// A rule match in normalised-text offsets.
pub(crate) struct RuleMatch {
    pub rule: usize,
    pub start: usize,
    pub end: usize,
}

/// Bit mask over rule anchor groups (two bits per rule).
pub(crate) type AnchorMask = u128;

/// Bits a segment must have for rule `i` to run.
pub(crate) fn required_mask(i: usize) -> AnchorMask {
    let mut m = 0;
    if let Some(r) = RULES.get(i) {
        for (g, words) in r.anchors.iter().enumerate() {
            if !words.is_empty() {
                m |= 1u128 << (2 * i + g);
            }
        }
    }
    m
}

/// (word, anchor bits it sets) for every anchor word.
pub(crate) fn anchor_words() -> Vec<(&'static str, AnchorMask)> {
    let mut out: Vec<(&'static str, AnchorMask)> = Vec::new();
    for (i, r) in RULES.iter().enumerate() {
        for (g, words) in r.anchors.iter().enumerate() {
            for w in words.split_whitespace() {
                let bit = 1u128 << (2 * i + g);
                match out.iter_mut().find(|(x, _)| *x == w) {
                    Some(e) => e.1 |= bit,
                    None => out.push((w, bit)),
                }
            }
        }
    }
    out
}

impl RuleSet {
    pub(crate) fn new() -> Result<RuleSet, regex::Error> {
        let regexes = RULES
            .iter()
            .map(|r| Regex::new(&r.pattern.replace("{AI}", AI)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RuleSet {
            regexes,
            need: (0..RULES.len()).map(required_mask).collect(),
            anchored: RULES.iter().map(|r| r.pattern.starts_with('^')).collect(),
        })
    }

    /// Run the rules whose anchors are all present in `mask` (or every rule when `all`) on the
    /// normalised segment `norm`, whose first word starts at `from` (what comes before it is
    /// punctuation); anchored rules read from there.
    pub(crate) fn find(
        &self,
        norm: &str,
        from: usize,
        mask: AnchorMask,
        all: bool,
        out: &mut Vec<RuleMatch>,
    ) {
        for (i, (re, &need)) in self.regexes.iter().zip(&self.need).enumerate() {
            if !all && (need == 0 || mask & need != need) {
                continue;
            }
            let at = if self.anchored.get(i).copied().unwrap_or(false) {
                from.min(norm.len())
            } else {
                0
            };
            if let Some(m) = norm.get(at..).and_then(|t| re.find(t)) {
                out.push(RuleMatch {
                    rule: i,
                    start: at + m.start(),
                    end: at + m.end(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_anchors_and_fits_the_mask() {
        assert!(RULES.len() * 2 <= 128);
        for (i, r) in RULES.iter().enumerate() {
            assert!(required_mask(i) != 0, "{} has no anchors", r.name);
        }
    }
}
