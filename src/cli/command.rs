//! A command tree with the behaviour of Go's cobra as Kanto's CLI uses it: how the
//! subcommand is found among flags, the argument rules and their error texts, `--help`/`-h`
//! and the `help` command, unknown-command suggestions, and the help and usage layout
//! (`Usage:`, `Examples:`, `Available Commands:`, `Flags:`, `Global Flags:`). Pure: a tree and
//! the arguments in, what to print or what to run out.

use super::flags::{self, Flag, Kind, Parsed};

/// The positional-argument rule of a command (cobra's `Args`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// No rule set: only the root refuses unknown subcommands.
    Legacy,
    /// `NoArgs`.
    None,
    /// `MaximumNArgs(n)`.
    Max(usize),
    /// Any number (a rule that accepts all, e.g. `MinimumNArgs(0)`).
    Any,
}

#[derive(Debug, Clone)]
pub struct Cmd {
    pub name: &'static str,
    /// The usage line after the parent's path, e.g. `get <container-id>`.
    pub use_line: &'static str,
    /// Appends ` [flags]` to the usage line (cobra's default; Kanto's commands disable it).
    pub flags_in_use_line: bool,
    pub short: &'static str,
    /// Empty: the help starts with `short`.
    pub long: String,
    pub example: &'static str,
    pub args: Args,
    pub flags: Vec<Flag>,
    /// The root's flags that every command inherits.
    pub persistent: Vec<Flag>,
    pub interspersed: bool,
    pub runnable: bool,
    /// On a flag or argument error, print no usage (Kanto sets it on its own commands).
    pub silence_usage: bool,
    pub subs: Vec<Cmd>,
    pub hidden: bool,
}

impl Cmd {
    pub fn new(name: &'static str, use_line: &'static str, short: &'static str) -> Cmd {
        Cmd {
            name,
            use_line,
            flags_in_use_line: false,
            short,
            long: String::new(),
            example: "",
            args: Args::Legacy,
            flags: Vec::new(),
            persistent: Vec::new(),
            interspersed: true,
            runnable: true,
            silence_usage: true,
            subs: Vec::new(),
            hidden: false,
        }
    }

    fn sub(&self, name: &str) -> Option<&Cmd> {
        self.subs.iter().find(|c| c.name == name)
    }
}

/// What an invocation comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Print and exit (help, usage errors).
    Print {
        stdout: String,
        stderr: String,
        code: i32,
    },
    /// Run the command at this path of names (root excluded) with these values.
    Run {
        path: Vec<&'static str>,
        parsed: Parsed,
    },
}

fn error(usage: Option<String>, text: &str) -> Outcome {
    let mut stderr = usage.map(|u| u + "\n").unwrap_or_default();
    stderr.push_str(&format!("Error: {text}\n"));
    Outcome::Print {
        stdout: String::new(),
        stderr,
        code: 1,
    }
}

fn help_flag(name: &str) -> Flag {
    let usage: &'static str = Box::leak(format!("help for {name}").into_boxed_str());
    Flag::new("help", Kind::Bool, "false", usage).short('h')
}

/// The flags a command knows: its own, its help flag (when initialised), the root's.
fn all_flags(root: &Cmd, path: &[&Cmd], with_help: bool) -> Vec<Flag> {
    let cmd = path.last().copied().unwrap_or(root);
    let mut v = cmd.flags.clone();
    if with_help {
        v.push(help_flag(cmd.name));
    }
    v.extend(root.persistent.iter().copied());
    v
}

/// cobra's `stripFlags`: the words that are not flags or flag values.
fn strip_flags(args: &[String], known: &[Flag]) -> Vec<String> {
    let takes_value_long = |name: &str| {
        known
            .iter()
            .find(|f| f.name == name)
            .map_or(true, |f| f.kind != Kind::Bool)
    };
    let takes_value_short = |c: Option<char>| {
        known
            .iter()
            .find(|f| f.short.is_some() && f.short == c)
            .map_or(true, |f| f.kind != Kind::Bool)
    };
    let mut words = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        i += 1;
        if s == "--" {
            break;
        }
        let long_with_value = s.starts_with("--") && !s.contains('=') && takes_value_long(&s[2..]);
        let short_with_value = s.starts_with('-')
            && !s.contains('=')
            && s.chars().count() == 2
            && takes_value_short(s.chars().nth(1));
        if long_with_value || short_with_value {
            if args.len() - i <= 1 {
                break;
            }
            i += 1;
        } else if !s.is_empty() && !s.starts_with('-') {
            words.push(s.clone());
        }
    }
    words
}

fn minus_first(args: &[String], word: &str) -> Vec<String> {
    let mut v = args.to_vec();
    if let Some(i) = v.iter().position(|a| a == word) {
        v.remove(i);
    }
    v
}

/// Levenshtein distance, case-insensitive (cobra's suggestions).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggestions(cmd: &Cmd, typed: &str) -> String {
    let found: Vec<&str> = cmd
        .subs
        .iter()
        .filter(|c| !c.hidden && c.name != "help")
        .filter(|c| {
            distance(typed, c.name) <= 2 || c.name.to_lowercase().starts_with(&typed.to_lowercase())
        })
        .map(|c| c.name)
        .collect();
    if found.is_empty() {
        return String::new();
    }
    let mut s = "\n\nDid you mean this?\n".to_string();
    for f in found {
        s.push_str(&format!("\t{f}\n"));
    }
    s
}

fn path_string(root: &Cmd, path: &[&Cmd]) -> String {
    let mut s = root.name.to_string();
    for c in path {
        s.push(' ');
        s.push_str(c.name);
    }
    s
}

/// cobra's `Find`: the deepest subcommand named among the words, the arguments left.
fn find<'a>(root: &'a Cmd, args: &[String]) -> (Vec<&'a Cmd>, Vec<String>, Option<String>) {
    let mut path: Vec<&Cmd> = Vec::new();
    let mut rest = args.to_vec();
    loop {
        let cur = path.last().copied().unwrap_or(root);
        let words = strip_flags(&rest, &all_flags(root, &path, false));
        let Some(next) = words.first() else { break };
        match cur.sub(next) {
            Some(sub) => {
                rest = minus_first(&rest, next);
                path.push(sub);
            }
            None => break,
        }
    }
    let cur = path.last().copied().unwrap_or(root);
    let mut err = None;
    if cur.args == Args::Legacy && path.is_empty() && !cur.subs.is_empty() {
        let words = strip_flags(&rest, &all_flags(root, &path, false));
        if let Some(w) = words.first() {
            err = Some(format!(
                "unknown command {} for {}{}",
                flags::go_quote(w),
                flags::go_quote(&path_string(root, &path)),
                suggestions(cur, w)
            ));
        }
    }
    (path, rest, err)
}

/// Runs the tree on `args` (without the program name).
pub fn execute(root: &Cmd, args: &[String]) -> Outcome {
    let (path, rest, err) = find(root, args);
    if let Some(e) = err {
        return error(None, &e);
    }
    let cmd = path.last().copied().unwrap_or(root);
    let usage = || (!cmd.silence_usage).then(|| usage_text(root, &path, true));
    let parsed = match flags::parse(&all_flags(root, &path, true), &rest, cmd.interspersed) {
        Ok(p) => p,
        Err(e) => return error(usage(), &e),
    };
    if parsed.bool("help") || !cmd.runnable {
        return print(help_text(root, &path), String::new(), 0);
    }
    let n = parsed.args.len();
    let arg_error = match cmd.args {
        Args::None if n > 0 => Some(format!(
            "unknown command {} for {}",
            flags::go_quote(&parsed.args[0]),
            flags::go_quote(&path_string(root, &path))
        )),
        Args::Max(max) if n > max => Some(format!("accepts at most {max} arg(s), received {n}")),
        _ => None,
    };
    if let Some(e) = arg_error {
        return error(usage(), &e);
    }
    if path.len() == 1 && cmd.name == "help" {
        return help_command(root, &parsed.args);
    }
    Outcome::Run {
        path: path.iter().map(|c| c.name).collect(),
        parsed,
    }
}

fn print(stdout: String, stderr: String, code: i32) -> Outcome {
    Outcome::Print {
        stdout,
        stderr,
        code,
    }
}

/// cobra's `help [command]`.
fn help_command(root: &Cmd, topic: &[String]) -> Outcome {
    let (path, _, err) = find(root, topic);
    if err.is_some() {
        let quoted: Vec<String> = topic.iter().map(|t| format!("`{t}`")).collect();
        let mut stderr = format!("Unknown help topic [{}]\n", quoted.join(" "));
        stderr.push_str(&usage_text(root, &[], false));
        return print(String::new(), stderr, 0);
    }
    print(help_text(root, &path), String::new(), 0)
}

fn trim_end(s: &str) -> &str {
    s.trim_end_matches(char::is_whitespace)
}

/// cobra's help template: the long description, then the usage.
pub fn help_text(root: &Cmd, path: &[&Cmd]) -> String {
    let cmd = path.last().copied().unwrap_or(root);
    let about = if cmd.long.is_empty() {
        cmd.short
    } else {
        cmd.long.as_str()
    };
    let mut out = String::new();
    if !about.is_empty() {
        out.push_str(trim_end(about));
        out.push_str("\n\n");
    }
    if cmd.runnable || !cmd.subs.is_empty() {
        out.push_str(&usage_text(root, path, true));
    }
    out
}

/// cobra's usage template.
pub fn usage_text(root: &Cmd, path: &[&Cmd], with_help: bool) -> String {
    let cmd = path.last().copied().unwrap_or(root);
    let full = path_string(root, path);
    let mut out = String::from("Usage:");
    if cmd.runnable {
        let parent = path_string(root, &path[..path.len().saturating_sub(1)]);
        out.push_str(&format!("\n  {parent} {}", cmd.use_line));
        if cmd.flags_in_use_line {
            out.push_str(" [flags]");
        }
    }
    let visible: Vec<&Cmd> = {
        let mut v: Vec<&Cmd> = cmd.subs.iter().filter(|c| !c.hidden).collect();
        v.sort_unstable_by(|a, b| a.name.cmp(b.name));
        v
    };
    if !visible.is_empty() {
        out.push_str(&format!("\n  {full} [command]"));
    }
    if !cmd.example.is_empty() {
        out.push_str("\n\nExamples:\n");
        out.push_str(cmd.example);
    }
    if !visible.is_empty() {
        // cobra pads command names to at least 11.
        let pad = cmd
            .subs
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0)
            .max(11);
        out.push_str("\n\nAvailable Commands:");
        for c in &visible {
            out.push_str(&format!("\n  {:<pad$} {}", c.name, c.short));
        }
    }
    let mut local = cmd.flags.clone();
    if with_help {
        local.push(help_flag(cmd.name));
    }
    let inherited: Vec<Flag> = if path.is_empty() {
        local.extend(root.persistent.iter().copied());
        Vec::new()
    } else {
        root.persistent.clone()
    };
    if !local.is_empty() {
        out.push_str("\n\nFlags:\n");
        out.push_str(trim_end(&flags::usages(&local)));
    }
    if !inherited.is_empty() {
        out.push_str("\n\nGlobal Flags:\n");
        out.push_str(trim_end(&flags::usages(&inherited)));
    }
    if !visible.is_empty() {
        out.push_str(&format!(
            "\n\nUse \"{full} [command] --help\" for more information about a command."
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Cmd {
        let mut root = Cmd::new("tool", "tool", "A tool");
        root.runnable = false;
        root.silence_usage = false;
        root.persistent = vec![Flag::new("host", Kind::Str, "/x", "Address")];
        let mut get = Cmd::new("get", "get <id>", "Get one.");
        get.args = Args::Max(1);
        get.example = "get <id>";
        get.flags = vec![Flag::new("name", Kind::Str, "", "By name.").short('n')];
        let mut list = Cmd::new("list", "list", "List all.");
        list.args = Args::None;
        let mut help = Cmd::new("help", "help [command]", "Help about any command");
        help.flags_in_use_line = true;
        help.silence_usage = false;
        root.subs = vec![list, get, help];
        root
    }

    fn run(args: &[&str]) -> Outcome {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        execute(&tree(), &args)
    }

    fn stderr(o: Outcome) -> String {
        match o {
            Outcome::Print { stderr, code, .. } => {
                assert_eq!(code, 1, "{stderr}");
                stderr
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn finds_the_command_among_flags() {
        let Outcome::Run { path, parsed } = run(&["--host", "get", "get", "x", "-n", "y"]) else {
            panic!()
        };
        assert_eq!(path, ["get"]);
        assert_eq!(parsed.string("host", ""), "get");
        assert_eq!(parsed.args, ["x"]);
        assert_eq!(parsed.string("name", ""), "y");
    }

    #[test]
    fn argument_and_command_errors_are_cobras() {
        assert_eq!(
            stderr(run(&["lst"])),
            "Error: unknown command \"lst\" for \"tool\"\n\nDid you mean this?\n\tlist\n\tget\n\n"
        );
        assert_eq!(
            stderr(run(&["zzz"])),
            "Error: unknown command \"zzz\" for \"tool\"\n"
        );
        assert_eq!(
            stderr(run(&["list", "x"])),
            "Error: unknown command \"x\" for \"tool list\"\n"
        );
        assert_eq!(
            stderr(run(&["get", "a", "b"])),
            "Error: accepts at most 1 arg(s), received 2\n"
        );
        assert_eq!(stderr(run(&["get", "--x"])), "Error: unknown flag: --x\n");
        // The root has no SilenceUsage: its usage comes first.
        let e = stderr(run(&["--x"]));
        assert!(
            e.starts_with("Usage:\n  tool [command]\n")
                && e.ends_with("command.\n\nError: unknown flag: --x\n"),
            "{e}"
        );
    }

    #[test]
    fn help_layout_is_cobras() {
        let Outcome::Print { stdout, code, .. } = run(&["get", "--help"]) else {
            panic!()
        };
        assert_eq!(code, 0);
        assert_eq!(
            stdout,
            "Get one.\n\nUsage:\n  tool get <id>\n\nExamples:\nget <id>\n\nFlags:\n  -h, --help          help for get\n  -n, --name string   By name.\n\nGlobal Flags:\n      --host string   Address (default \"/x\")\n"
        );
        let Outcome::Print { stdout: root, .. } = run(&[]) else {
            panic!()
        };
        assert_eq!(
            root,
            "A tool\n\nUsage:\n  tool [command]\n\nAvailable Commands:\n  get         Get one.\n  help        Help about any command\n  list        List all.\n\nFlags:\n  -h, --help          help for tool\n      --host string   Address (default \"/x\")\n\nUse \"tool [command] --help\" for more information about a command.\n"
        );
        assert_eq!(run(&["help", "get"]), run(&["get", "-h"]));
        let Outcome::Print {
            stdout,
            stderr,
            code,
        } = run(&["help", "nope"])
        else {
            panic!()
        };
        assert_eq!((stdout.as_str(), code), ("", 0));
        assert!(
            stderr.starts_with("Unknown help topic [`nope`]\nUsage:\n  tool [command]\n"),
            "{stderr}"
        );
        assert!(!stderr.contains("-h, --help"), "{stderr}");
    }

    #[test]
    fn suggestion_distance() {
        assert_eq!(distance("lis", "logs"), 2);
        assert_eq!(distance("LIST", "list"), 0);
        assert_eq!(distance("", "abc"), 3);
    }
}
