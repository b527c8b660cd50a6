//! Command-line flags with the semantics of Go's pflag (what Kanto's CLI and daemon parse
//! with): `--flag value`, `--flag=value`, `-f value`, `-fvalue`, `-f=value`, grouped booleans
//! `-qf`, `--` ends the flags, the last of a repeated flag wins (lists append), booleans take
//! no separate value (`--debug=false` only), and pflag's error texts. Pure: tables in, values
//! or an error text out; also the flag part of the help (`FlagUsages`).

/// The value type of a flag, named in the help as pflag names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    /// Go `int` (64 bit).
    Int,
    Int32,
    Int64,
    /// pflag `stringSlice`: each value is a CSV record, appended.
    Strings,
    /// pflag `stringArray`: each value one element, appended.
    StringArray,
}

impl Kind {
    /// The type name in the help line (pflag's `UnquoteUsage`); booleans have none.
    fn type_name(self) -> &'static str {
        match self {
            Kind::Bool => "",
            Kind::Str => "string",
            Kind::Int | Kind::Int64 => "int",
            Kind::Int32 => "int32",
            Kind::Strings => "strings",
            Kind::StringArray => "stringArray",
        }
    }
}

/// One flag. `default` is the default as pflag prints it (`DefValue`).
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    pub default: &'static str,
    pub usage: &'static str,
}

impl Flag {
    pub const fn new(
        name: &'static str,
        kind: Kind,
        default: &'static str,
        usage: &'static str,
    ) -> Flag {
        Flag {
            name,
            short: None,
            kind,
            default,
            usage,
        }
    }

    pub const fn short(mut self, c: char) -> Flag {
        self.short = Some(c);
        self
    }

    fn default_is_zero(&self) -> bool {
        match self.kind {
            Kind::Bool => self.default == "false" || self.default.is_empty(),
            Kind::Str => self.default.is_empty(),
            Kind::Int | Kind::Int32 | Kind::Int64 => self.default == "0" || self.default.is_empty(),
            Kind::Strings | Kind::StringArray => self.default == "[]" || self.default.is_empty(),
        }
    }
}

/// A value that was set on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Str(String),
    Int(i64),
    List(Vec<String>),
}

/// The outcome of a parse: the values set (by flag name, in the order first set) and the
/// positional arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub set: Vec<(&'static str, Value)>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn changed(&self, name: &str) -> bool {
        self.set.iter().any(|(n, _)| *n == name)
    }

    fn value(&self, name: &str) -> Option<&Value> {
        self.set.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A string flag's value, else `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        match self.value(name) {
            Some(Value::Str(s)) => s.clone(),
            _ => default.to_string(),
        }
    }

    /// A string flag's value when it was given (also when given empty).
    pub fn opt_string(&self, name: &str) -> Option<String> {
        match self.value(name) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.value(name), Some(Value::Bool(true)))
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.value(name) {
            Some(Value::Int(i)) => *i,
            _ => default,
        }
    }

    /// A list flag's values (empty when not given).
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.value(name) {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }

    fn store(&mut self, flag: &Flag, text: &str) -> Result<(), String> {
        let invalid = |why: String| {
            let shown = match flag.short {
                Some(c) => format!("-{c}, --{}", flag.name),
                None => format!("--{}", flag.name),
            };
            format!(
                "invalid argument {} for {} flag: {why}",
                go_quote(text),
                go_quote(&shown)
            )
        };
        let value = match flag.kind {
            Kind::Bool => Value::Bool(parse_bool(text).map_err(invalid)?),
            Kind::Str => Value::Str(text.to_string()),
            Kind::Int | Kind::Int64 => Value::Int(parse_int(text, 64).map_err(invalid)?),
            Kind::Int32 => Value::Int(parse_int(text, 32).map_err(invalid)?),
            Kind::Strings => Value::List(read_csv(text).map_err(invalid)?),
            Kind::StringArray => Value::List(vec![text.to_string()]),
        };
        match (self.set.iter_mut().find(|(n, _)| *n == flag.name), value) {
            (Some((_, Value::List(old))), Value::List(new)) => old.extend(new),
            (Some((_, old)), value) => *old = value,
            (None, value) => self.set.push((flag.name, value)),
        }
        Ok(())
    }
}

/// Parses `args` against `flags`. With `interspersed` false (Kanto's `create`), the first
/// positional argument ends the flags.
pub fn parse(flags: &[Flag], args: &[String], interspersed: bool) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        i += 1;
        if s.len() < 2 || !s.starts_with('-') {
            out.args.push(s.clone());
            if !interspersed {
                out.args.extend(args[i..].iter().cloned());
                return Ok(out);
            }
            continue;
        }
        if let Some(long) = s.strip_prefix("--") {
            if long.is_empty() {
                out.args.extend(args[i..].iter().cloned());
                return Ok(out);
            }
            if long.starts_with('-') || long.starts_with('=') {
                return Err(format!("bad flag syntax: {s}"));
            }
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let Some(flag) = flags.iter().find(|f| f.name == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            let value = match inline {
                Some(v) => v.to_string(),
                None if flag.kind == Kind::Bool => "true".to_string(),
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => return Err(format!("flag needs an argument: {s}")),
            };
            out.store(flag, &value)?;
        } else {
            // A group of shorthands; as pflag, each one that needs a separate value takes the
            // argument after the group.
            let group = &s[1..];
            let mut rest = group;
            let mut consumed_next = false;
            while let Some(c) = rest.chars().next() {
                let after = &rest[c.len_utf8()..];
                let Some(flag) = flags.iter().find(|f| f.short == Some(c)) else {
                    return Err(format!(
                        "unknown shorthand flag: {} in -{rest}",
                        go_quote_char(c)
                    ));
                };
                let value;
                if let Some(v) = after.strip_prefix('=').filter(|_| after.len() > 1) {
                    value = v.to_string();
                    rest = "";
                } else if flag.kind == Kind::Bool {
                    value = "true".to_string();
                    rest = after;
                } else if !after.is_empty() {
                    value = after.to_string();
                    rest = "";
                } else if i < args.len() {
                    value = args[i].clone();
                    consumed_next = true;
                    rest = "";
                } else {
                    return Err(format!(
                        "flag needs an argument: {} in -{rest}",
                        go_quote_char(c)
                    ));
                }
                out.store(flag, &value)?;
            }
            if consumed_next {
                i += 1;
            }
        }
    }
    Ok(out)
}

/// pflag's `FlagUsages`: one line per flag, sorted by name, the usage aligned after the
/// longest `-s, --name type`, continuation lines of a multi-line usage indented to it.
pub fn usages(flags: &[Flag]) -> String {
    let mut sorted: Vec<&Flag> = flags.iter().collect();
    sorted.sort_unstable_by(|a, b| a.name.cmp(b.name));
    let heads: Vec<String> = sorted
        .iter()
        .map(|f| {
            let mut line = match f.short {
                Some(c) => format!("  -{c}, --{}", f.name),
                None => format!("      --{}", f.name),
            };
            let t = f.kind.type_name();
            if !t.is_empty() {
                line.push(' ');
                line.push_str(t);
            }
            line
        })
        .collect();
    let width = heads.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (f, head) in sorted.iter().zip(heads) {
        let mut usage = f.usage.to_string();
        if !f.default_is_zero() {
            if f.kind == Kind::Str {
                usage.push_str(&format!(" (default {})", go_quote(f.default)));
            } else {
                usage.push_str(&format!(" (default {})", f.default));
            }
        }
        let indent = " ".repeat(width + 3);
        let usage = usage.replace('\n', &format!("\n{indent}"));
        out.push_str(&head);
        out.push_str(&" ".repeat(width - head.len() + 2));
        out.push(' ');
        out.push_str(&usage);
        out.push('\n');
    }
    out
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

/// Go's `strconv.ParseInt(s, 0, bits)`: sign, `0x`/`0o`/`0b`/leading-0 octal prefixes,
/// `_` between digits when a prefix is given.
pub fn parse_int(s: &str, bits: u32) -> Result<i64, String> {
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(s));
    let range = || {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    };
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    if digits.is_empty() && !(radix == 8 && lower.len() > 1 && !lower.starts_with("0o")) {
        return Err(syntax());
    }
    if digits.contains('_') {
        // Underscores only with a prefix, each between two digits (or after the prefix).
        let ok = prefixed
            && !digits.ends_with('_')
            && !digits.contains("__")
            && (!digits.starts_with('_') || radix != 8 || lower.starts_with("0o"));
        if !ok {
            return Err(syntax());
        }
    }
    let mut value: u128 = 0;
    for c in digits.chars().filter(|c| *c != '_') {
        let d = c.to_digit(radix).ok_or_else(syntax)?;
        value = value.saturating_mul(u128::from(radix)) + u128::from(d);
        value = value.min(u128::from(u64::MAX) + 1);
    }
    let limit = 1u128 << (bits - 1);
    if (!negative && value >= limit) || (negative && value > limit) {
        return Err(range());
    }
    let v = value as i128;
    Ok(if negative { -v } else { v } as i64)
}

/// One record of Go's `encoding/csv` reader (pflag's `stringSlice`): `,`-separated fields,
/// `"quoted, fields"` with `""` for a quote; an empty text is no values.
pub fn read_csv(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut rest = line;
    let mut col = 1;
    loop {
        if let Some(q) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if q[i + 1..].starts_with('"') {
                        field.push('"');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    field.push(c);
                }
            }
            let Some(end) = end else {
                return Err(format!(
                    "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                    col + q.len() + 1
                ));
            };
            let after = &q[end..];
            fields.push(field);
            if let Some(next) = after.strip_prefix(',') {
                col += 1 + end + 1;
                rest = next;
            } else if after.is_empty() {
                return Ok(fields);
            } else {
                return Err(format!(
                    "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                    col + end + 1
                ));
            }
        } else {
            let (field, next) = match rest.split_once(',') {
                Some((f, n)) => (f, Some(n)),
                None => (rest, None),
            };
            if let Some(at) = field.find('"') {
                return Err(format!(
                    "parse error on line 1, column {}: bare \" in non-quoted-field",
                    col + at
                ));
            }
            fields.push(field.to_string());
            match next {
                Some(n) => {
                    col += field.len() + 1;
                    rest = n;
                }
                None => return Ok(fields),
            }
        }
    }
}

/// Go's `%q` of a string (the common escapes; other control characters as `\xNN`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a byte/rune: `'x'`.
fn go_quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".to_string(),
        '\\' => "'\\\\'".to_string(),
        c if (c as u32) < 0x20 => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag::new("name", Kind::Str, "", "the name").short('n'),
        Flag::new("quiet", Kind::Bool, "false", "quiet").short('q'),
        Flag::new("force", Kind::Bool, "false", "force").short('f'),
        Flag::new("tail", Kind::Int32, "100", "lines").short('t'),
        Flag::new("timeout", Kind::Int, "30", "seconds"),
        Flag::new("ports", Kind::Strings, "[]", "ports"),
        Flag::new("e", Kind::StringArray, "[]", "env"),
    ];

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn ok(a: &[&str]) -> Parsed {
        parse(FLAGS, &args(a), true).unwrap()
    }

    fn err(a: &[&str]) -> String {
        parse(FLAGS, &args(a), true).unwrap_err()
    }

    #[test]
    fn the_forms_of_a_flag() {
        for form in [
            &["--name", "x"][..],
            &["--name=x"],
            &["-n", "x"],
            &["-nx"],
            &["-n=x"],
        ] {
            assert_eq!(ok(form).string("name", ""), "x", "{form:?}");
        }
        let p = ok(&["-qf", "a", "--", "-n", "b"]);
        assert!(p.bool("quiet") && p.bool("force"));
        assert_eq!(p.args, ["a", "-n", "b"]);
        assert!(!p.changed("name"));
        // A group takes the value of its last shorthand from the next argument.
        let p = ok(&["-qn", "x", "y"]);
        assert_eq!(
            (p.bool("quiet"), p.string("name", ""), p.args.clone()),
            (true, "x".into(), args(&["y"]))
        );
        assert!(!ok(&["--quiet=false"]).bool("quiet"));
        assert_eq!(ok(&["-"]).args, ["-"]);
        assert_eq!(ok(&["--name", "-x"]).string("name", ""), "-x");
    }

    #[test]
    fn repeated_flags_last_wins_lists_append() {
        let p = ok(&[
            "--name",
            "a",
            "--timeout",
            "5",
            "--name",
            "b",
            "--timeout=7",
        ]);
        assert_eq!(p.string("name", ""), "b");
        assert_eq!(p.int("timeout", 30), 7);
        let p = ok(&[
            "--ports",
            "1:1,2:2",
            "--ports",
            "\"3:3,x\"",
            "--e",
            "A=1,2",
            "--e",
            "B",
        ]);
        assert_eq!(p.list("ports"), ["1:1", "2:2", "3:3,x"]);
        assert_eq!(p.list("e"), ["A=1,2", "B"]);
        assert_eq!(ok(&[]).int("timeout", 30), 30);
        assert_eq!(ok(&["--ports="]).list("ports"), Vec::<String>::new());
    }

    #[test]
    fn not_interspersed_stops_at_the_first_argument() {
        let p = parse(FLAGS, &args(&["-n", "x", "img", "-q", "--name"]), false).unwrap();
        assert_eq!(p.args, ["img", "-q", "--name"]);
        assert!(!p.bool("quiet"));
    }

    #[test]
    fn error_texts_are_pflags() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus"], "unknown flag: --bogus"),
            (&["--bogus=1"], "unknown flag: --bogus"),
            (&["-x"], "unknown shorthand flag: 'x' in -x"),
            (&["-qx"], "unknown shorthand flag: 'x' in -x"),
            (&["--name"], "flag needs an argument: --name"),
            (&["-n"], "flag needs an argument: 'n' in -n"),
            (&["---x"], "bad flag syntax: ---x"),
            (&["--=x"], "bad flag syntax: --=x"),
            (
                &["--timeout", "abc"],
                "invalid argument \"abc\" for \"--timeout\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax",
            ),
            (
                &["-t", "x"],
                "invalid argument \"x\" for \"-t, --tail\" flag: strconv.ParseInt: parsing \"x\": invalid syntax",
            ),
            (
                &["--tail=3000000000"],
                "invalid argument \"3000000000\" for \"-t, --tail\" flag: strconv.ParseInt: parsing \"3000000000\": value out of range",
            ),
            (
                &["--quiet=maybe"],
                "invalid argument \"maybe\" for \"-q, --quiet\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax",
            ),
            (
                &["--ports", "a\"b"],
                "invalid argument \"a\\\"b\" for \"--ports\" flag: parse error on line 1, column 2: bare \" in non-quoted-field",
            ),
        ];
        for (a, want) in cases {
            assert_eq!(err(a), *want, "{a:?}");
        }
    }

    #[test]
    fn go_integers() {
        for (s, v) in [
            ("0x10", 16),
            ("010", 8),
            ("-0b11", -3),
            ("1_000", 0),
            ("0x_1f", 31),
            ("+5", 5),
            ("0", 0),
            ("-1", -1),
        ] {
            if s == "1_000" {
                assert!(parse_int(s, 64).is_err());
            } else {
                assert_eq!(parse_int(s, 64), Ok(v), "{s}");
            }
        }
        assert_eq!(parse_int("-2147483648", 32), Ok(-2147483648));
        assert!(parse_int("2147483648", 32).is_err());
        assert_eq!(parse_int("-9223372036854775808", 64), Ok(i64::MIN));
        assert!(parse_int("", 64).is_err());
        assert!(parse_int("0x", 64).is_err());
    }

    #[test]
    fn help_lines_are_pflags() {
        let text = usages(&[
            Flag::new("timeout", Kind::Int, "30", "Seconds"),
            Flag::new("host", Kind::Str, "/x.sock", "Address"),
            Flag::new("debug", Kind::Bool, "false", "Debug"),
            Flag::new("help", Kind::Bool, "false", "help for x").short('h'),
            Flag::new("mp", Kind::Strings, "[]", "Mounts:\nline two"),
        ]);
        assert_eq!(
            text,
            "      --debug         Debug\n  -h, --help          help for x\n      --host string   Address (default \"/x.sock\")\n      --mp strings    Mounts:\n                      line two\n      --timeout int   Seconds (default 30)\n"
        );
    }
}
