//! Tokenising a log message and deciding which tokens are variables.
//!
//! Owns the masking rules. A message is split on ASCII whitespace; each token is
//! then classified without regular expressions, in one pass over its bytes:
//!
//! - numbers, hex, IPv4/IPv6 addresses, UUIDs, durations and sizes (`12ms`, `4KB`),
//!   identifiers with digits (`blk_-123`, `job_2015_0001`): every token holding a
//!   digit is a variable;
//! - paths and URLs (`/var/log/x`, `C:\dir`, `http://...`);
//! - quoted strings (`'abc'`, `"abc"`);
//! - `key=value` and `key:value` pairs keep their key and mask a variable value
//!   (`uid=0` becomes `uid=<*>`).
//!
//! Surrounding punctuation (`(`, `)`, `,`, `;`, ...) is ignored when classifying, so
//! `(10.0.0.1:80),` is a variable too. The rules were chosen on Loghub 2k (see
//! `benches/BENCHMARKS.md`): "holds a digit" alone is the single strongest rule.

/// The text a variable is written as in templates.
pub const WILDCARD: &str = "<*>";

/// One token of a message after masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masked<'a> {
    /// A constant token, kept as it is.
    Const(&'a str),
    /// A variable: the whole token becomes `<*>`.
    Wild,
    /// A key with a variable value: `prefix` is the key and its separator
    /// (`uid=`), the rest becomes `<*>`.
    KeyWild(&'a str),
}

impl Masked<'_> {
    /// Whether this token is (or ends in) a variable.
    pub fn is_variable(&self) -> bool {
        !matches!(self, Masked::Const(_))
    }

    /// Whether `template` (a constant slot of a template) is this token's masked text.
    pub fn matches_text(&self, template: &str) -> bool {
        match self {
            Masked::Const(text) => short_eq(text.as_bytes(), template.as_bytes()),
            Masked::Wild => template == WILDCARD,
            Masked::KeyWild(key) => {
                template.len() == key.len() + WILDCARD.len()
                    && short_eq(key.as_bytes(), &template.as_bytes()[..key.len()])
                    && template.ends_with(WILDCARD)
            }
        }
    }

    /// [`matches_text`](Self::matches_text) on the template slot's bytes.
    #[inline]
    pub fn matches_bytes(&self, template: &[u8]) -> bool {
        const WILD: &[u8] = WILDCARD.as_bytes();
        match self {
            Masked::Const(text) => short_eq(text.as_bytes(), template),
            Masked::Wild => template == WILD,
            Masked::KeyWild(key) => {
                template.len() == key.len() + WILD.len()
                    && short_eq(key.as_bytes(), &template[..key.len()])
                    && template.ends_with(WILD)
            }
        }
    }

    /// Whether this token is `key` followed by a value.
    pub fn has_key(&self, key: &str) -> bool {
        match self {
            Masked::Const(text) => text.len() > key.len() && text.starts_with(key),
            Masked::KeyWild(own) => *own == key,
            Masked::Wild => false,
        }
    }

    /// The masked text, as stored in a template.
    pub fn to_text(&self) -> Box<str> {
        match self {
            Masked::Const(text) => (*text).into(),
            Masked::Wild => WILDCARD.into(),
            Masked::KeyWild(key) => format!("{key}{WILDCARD}").into_boxed_str(),
        }
    }

    /// The variable part of `token` (whose masking this is), if any.
    pub fn parameter<'t>(&self, token: &'t str) -> Option<&'t str> {
        match self {
            Masked::Const(_) => None,
            Masked::Wild => Some(token),
            Masked::KeyWild(key) => token.get(key.len()..),
        }
    }
}

/// Byte equality without a library call for the short strings tokens mostly are.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 16 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Splits `message` into at most `max_tokens` tokens on ASCII whitespace; a longer
/// message keeps its remainder (trimmed) as the last token.
pub fn tokenize<'a>(message: &'a str, max_tokens: usize, out: &mut Vec<&'a str>) {
    out.clear();
    let mut rest = message.trim_ascii_start();
    while !rest.is_empty() {
        if out.len() + 1 == max_tokens {
            out.push(rest.trim_ascii_end());
            return;
        }
        let end = rest
            .bytes()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        out.push(&rest[..end]);
        rest = rest[end..].trim_ascii_start();
    }
}

/// Tokenises `message` like [`tokenize`] and masks each token, in one pass over
/// its bytes; `out` receives the masked tokens and `tokens`, when given, the
/// tokens themselves.
pub fn tokenize_masked<'a>(
    message: &'a str,
    max_tokens: usize,
    out: &mut Vec<Masked<'a>>,
    mut tokens: Option<&mut Vec<&'a str>>,
) {
    out.clear();
    if let Some(tokens) = tokens.as_deref_mut() {
        tokens.clear();
    }
    let bytes = message.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && CLASSES[bytes[i] as usize] & SPACE != 0 {
            i += 1;
        }
        if i == bytes.len() {
            return;
        }
        if out.len() + 1 == max_tokens {
            let rest = message[i..].trim_ascii_end();
            out.push(mask(rest));
            if let Some(tokens) = tokens {
                tokens.push(rest);
            }
            return;
        }
        let start = i;
        let mut classes = 0u8;
        for b in &bytes[start..] {
            let class = CLASSES[*b as usize];
            if class & SPACE != 0 {
                break;
            }
            classes |= class;
            i += 1;
        }
        let shape = Shape::with_classes(&bytes[start..i], classes);
        // ASCII whitespace never falls inside a UTF-8 sequence, so these are
        // character boundaries.
        let token = &message[start..i];
        out.push(mask_shaped(token, &shape));
        if let Some(tokens) = tokens.as_deref_mut() {
            tokens.push(token);
        }
    }
}

/// Classifies one token.
pub fn mask(token: &str) -> Masked<'_> {
    mask_shaped(token, &Shape::of(token.as_bytes()))
}

#[inline(always)]
fn mask_shaped<'a>(token: &'a str, shape: &Shape) -> Masked<'a> {
    // The value of a pair is a variable, whatever it looks like (`ret:false`,
    // `name=android`); the key stays: `uid=0` -> `uid=<*>`.
    if let Some(split) = shape.key_split(token.as_bytes()) {
        // After `=` any value; after `:` (also a plain punctuation mark) only
        // values that look variable.
        let (key, value) = token.split_at(split);
        if key.ends_with('=') || is_variable(value) || is_literal(value) {
            return Masked::KeyWild(key);
        }
    }
    if token == WILDCARD || shape.is_variable(token.as_bytes()) {
        return Masked::Wild;
    }
    Masked::Const(token)
}

const WRAP: u8 = 1;
const DIGIT: u8 = 2;
const SLASH: u8 = 4;
const SEPARATOR: u8 = 8;
const KEY: u8 = 16;
const DOT: u8 = 32;
const SPACE: u8 = 64;
/// Quotes and backslashes: quoted strings and Windows paths.
const QUOTE: u8 = 128;

/// Byte classes, one table lookup per byte.
const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if matches!(
            c,
            b'(' | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'<'
                | b'>'
                | b','
                | b';'
                | b'.'
                | b':'
                | b'!'
        ) {
            class |= WRAP;
        }
        if c.is_ascii_digit() {
            class |= DIGIT;
        }
        if c == b'/' {
            class |= SLASH;
        }
        if c == b'=' || c == b':' {
            class |= SEPARATOR;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'-' {
            class |= KEY;
        }
        if c == b'.' {
            class |= DOT;
        }
        if c.is_ascii_whitespace() {
            class |= SPACE;
        }
        if matches!(c, b'\'' | b'"' | b'`' | b'\\') {
            class |= QUOTE;
        }
        table[b] = class;
        b += 1;
    }
    table
};

/// What one pass over a token's bytes tells.
struct Shape {
    /// Union of the byte classes.
    classes: u8,
    /// Number of '/'.
    slashes: u32,
    /// Index of the first '=' or ':'.
    separator: Option<usize>,
}

impl Shape {
    fn of(bytes: &[u8]) -> Self {
        let classes = bytes.iter().fold(0, |acc, b| acc | CLASSES[*b as usize]);
        Self::with_classes(bytes, classes)
    }

    /// The shape of a token whose classes are known; the rarer facts are only
    /// looked for when the classes say they exist.
    #[inline]
    fn with_classes(bytes: &[u8], classes: u8) -> Self {
        let slashes = if classes & SLASH != 0 {
            bytes.iter().filter(|b| **b == b'/').count() as u32
        } else {
            0
        };
        let separator = if classes & SEPARATOR != 0 {
            bytes.iter().position(|b| *b == b'=' || *b == b':')
        } else {
            None
        };
        Shape {
            classes,
            slashes,
            separator,
        }
    }

    /// Where the value of a `key=value` or `key:value` token starts.
    ///
    /// A key is a word: letters, '_', '-' (and '.' before '=');
    /// "10:30", "http://" and "host.example:80" are not keys.
    fn key_split(&self, bytes: &[u8]) -> Option<usize> {
        let at = self.separator?;
        if at == 0 || at + 1 >= bytes.len() || bytes[at + 1] == b'/' {
            return None;
        }
        let allowed = if bytes[at] == b'=' { KEY | DOT } else { KEY };
        bytes[..at]
            .iter()
            .all(|b| CLASSES[*b as usize] & allowed != 0)
            .then_some(at + 1)
    }

    /// Whether the token (possibly wrapped in punctuation) is a variable.
    fn is_variable(&self, bytes: &[u8]) -> bool {
        // Most constant words: no digit, slash or quote, and too long or too short
        // for a day or month name.
        if self.classes & (DIGIT | SLASH | QUOTE) == 0 && (bytes.len() < 3 || bytes.len() > 5) {
            return false;
        }
        let core = trim_wrappers(bytes);
        if core.is_empty() {
            return false;
        }
        if self.classes & DIGIT != 0 {
            // A word with a one-digit version suffix names a thing (`SOCKS5`, `ssh2`).
            let (last, word) = core.split_last().expect("core is not empty");
            let versioned_name = last.is_ascii_digit()
                && word.len() >= 3
                && (word.iter().all(u8::is_ascii_uppercase)
                    || word.iter().all(u8::is_ascii_lowercase));
            return !versioned_name;
        }
        if is_calendar_word(core) {
            return true;
        }
        // Quoted strings.
        if core.len() >= 2
            && matches!(core[0], b'\'' | b'"' | b'`')
            && core[core.len() - 1] == core[0]
        {
            return true;
        }
        // Paths and URLs: "/a/b", "C:\x", "scheme://".
        (core[0] == b'/' && core.len() > 1 && self.slashes >= 2)
            || (self.slashes >= 2 && core.windows(3).any(|w| w == b"://"))
            || (core.len() > 2 && core[1] == b':' && core[2] == b'\\')
    }
}

fn trim_wrappers(bytes: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < bytes.len() && CLASSES[bytes[start] as usize] & WRAP != 0 {
        start += 1;
    }
    let mut end = bytes.len();
    while end > start && CLASSES[bytes[end - 1] as usize] & WRAP != 0 {
        end -= 1;
    }
    &bytes[start..end]
}

/// Whether a token (possibly wrapped in punctuation) is a variable.
fn is_variable(token: &str) -> bool {
    Shape::of(token.as_bytes()).is_variable(token.as_bytes())
}

/// `true`, `false`, `null` and their kin, with trailing punctuation.
fn is_literal(value: &str) -> bool {
    let word = value.trim_end_matches(|c: char| c.is_ascii_punctuation());
    ["true", "false", "null", "none", "nil", "yes", "no"]
        .iter()
        .any(|l| word.eq_ignore_ascii_case(l))
}

/// Day and month names, the words of timestamps.
fn is_calendar_word(core: &[u8]) -> bool {
    const WORDS: [&[u8]; 19] = [
        b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun", b"Jan", b"Feb", b"Mar", b"Apr",
        b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    core.len() == 3 && core[0].is_ascii_uppercase() && WORDS.contains(&core)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(message: &str) -> String {
        let mut tokens = Vec::new();
        tokenize(message, 64, &mut tokens);
        tokens
            .iter()
            .map(|t| mask(t).to_text().into_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn numbers_ips_hex_uuids_and_durations_are_variables() {
        assert_eq!(
            masked("Received block blk_-1608999687919862906 of size 91178 from /10.250.10.6"),
            "Received block <*> of size <*> from <*>"
        );
        assert_eq!(
            masked("took 12ms (retry 3), id 0x7f3a, req 123e4567-e89b-12d3-a456-426614174000"),
            "took <*> (retry <*> id <*> req <*>"
        );
        assert_eq!(masked("peer [fe80::1%eth0]:8080 up"), "peer <*> up");
    }

    #[test]
    fn paths_urls_and_quoted_strings_are_variables() {
        assert_eq!(
            masked("open /var/log/app.log failed, see http://docs.example/x 'boom'"),
            "open <*> failed, see <*> <*>"
        );
        assert_eq!(masked(r"loading C:\Windows\system.dll"), "loading <*>");
        // A lone slash or a word is not a path.
        assert_eq!(masked("GET / ok"), "GET / ok");
    }

    #[test]
    fn key_value_pairs_keep_their_key() {
        assert_eq!(
            masked("authentication failure; uid=0 euid=0 tty=NODEVssh rhost=218.188.2.4"),
            "authentication failure; uid=<*> euid=<*> tty=<*> rhost=<*>"
        );
        // After ':' only variable-looking values are masked.
        assert_eq!(
            masked("ret:false action:android.intent.TICK"),
            "ret:<*> action:android.intent.TICK"
        );
        // Names with a one-digit version stay (SOCKS5, ssh2); more digits vary.
        assert_eq!(masked("via SOCKS5 ssh2 node12"), "via SOCKS5 ssh2 <*>");
        // Day and month names are parts of timestamps.
        assert_eq!(masked("at Mon Jul 4"), "at <*> <*> <*>");
        assert_eq!(masked("state:3 at 10:30"), "state:<*> at <*>");
    }

    #[test]
    fn words_and_punctuation_stay_constant() {
        assert_eq!(
            masked("Connection closed by peer; retrying."),
            "Connection closed by peer; retrying."
        );
        assert_eq!(masked("( ) , :"), "( ) , :");
    }

    #[test]
    fn tokenize_caps_the_token_count_keeping_the_remainder() {
        let mut tokens = Vec::new();
        tokenize("  a b  c d e  ", 3, &mut tokens);
        assert_eq!(tokens, ["a", "b", "c d e"]);
        tokenize("", 3, &mut tokens);
        assert!(tokens.is_empty());
    }

    #[test]
    fn one_pass_masking_equals_tokenize_then_mask() {
        let message = " uid=0 (10.0.0.1:80), ret:false  /a/b SOCKS5 Mon 'q' word\tend ";
        let mut tokens = Vec::new();
        tokenize(message, 6, &mut tokens);
        let two_pass: Vec<Masked<'_>> = tokens.iter().map(|t| mask(t)).collect();
        let (mut one_pass, mut same_tokens) = (Vec::new(), Vec::new());
        tokenize_masked(message, 6, &mut one_pass, Some(&mut same_tokens));
        assert_eq!(one_pass, two_pass);
        assert_eq!(same_tokens, tokens);
        assert_eq!(one_pass.len(), 6);
    }

    proptest::proptest! {
        /// Any text (any Unicode, any whitespace): the one-pass masking equals
        /// tokenising then masking, and neither panics.
        #[test]
        fn one_pass_masking_matches_on_any_text(text in "\\PC{0,80}", max in 2usize..12) {
            let mut tokens = Vec::new();
            tokenize(&text, max, &mut tokens);
            let two_pass: Vec<Masked<'_>> = tokens.iter().map(|t| mask(t)).collect();
            let (mut one_pass, mut same_tokens) = (Vec::new(), Vec::new());
            tokenize_masked(&text, max, &mut one_pass, Some(&mut same_tokens));
            proptest::prop_assert_eq!(one_pass, two_pass);
            proptest::prop_assert_eq!(same_tokens, tokens);
        }
    }

    #[test]
    fn parameters_are_the_variable_parts() {
        assert_eq!(mask("uid=42").parameter("uid=42"), Some("42"));
        assert_eq!(mask("0x1f").parameter("0x1f"), Some("0x1f"));
        assert_eq!(mask("word").parameter("word"), None);
        assert!(mask("uid=42").matches_text("uid=<*>"));
        assert!(!mask("uid=42").matches_text("gid=<*>"));
    }
}
