//! `kanto-cm completion bash|zsh|fish|powershell`: the command cobra adds to Kanto's CLI (its
//! help texts as cobra writes them), with leda-cm's own scripts made from the command table:
//! commands, each command's flags, and the values of the flags that take a fixed set.

use std::fmt::Write as _;

use super::command::{Args, Cmd};
use super::flags::{Flag, Kind};

const SHELLS: [(&str, &str, bool); 4] = [
    (
        "bash",
        "\nGenerate the autocompletion script for the bash shell.\n\nThis script depends on the 'bash-completion' package.\nIf it is not installed already, you can install it via your OS's package manager.\n\nTo load completions in your current shell session:\n$ source <(kanto-cm completion bash)\n\nTo load completions for every new session, execute once:\nLinux:\n  $ kanto-cm completion bash > /etc/bash_completion.d/kanto-cm\nMacOS:\n  $ kanto-cm completion bash > /usr/local/etc/bash_completion.d/kanto-cm\n\nYou will need to start a new shell for this setup to take effect.",
        false,
    ),
    (
        "fish",
        "\nGenerate the autocompletion script for the fish shell.\n\nTo load completions in your current shell session:\n$ kanto-cm completion fish | source\n\nTo load completions for every new session, execute once:\n$ kanto-cm completion fish > ~/.config/fish/completions/kanto-cm.fish\n\nYou will need to start a new shell for this setup to take effect.",
        true,
    ),
    (
        "powershell",
        "\nGenerate the autocompletion script for powershell.\n\nTo load completions in your current shell session:\nPS C:\\> kanto-cm completion powershell | Out-String | Invoke-Expression\n\nTo load completions for every new session, add the output of the above command\nto your powershell profile.",
        true,
    ),
    (
        "zsh",
        "\nGenerate the autocompletion script for the zsh shell.\n\nIf shell completion is not already enabled in your environment you will need\nto enable it.  You can execute the following once:\n\n$ echo \"autoload -U compinit; compinit\" >> ~/.zshrc\n\nTo load completions for every new session, execute once:\n# Linux:\n$ kanto-cm completion zsh > \"${fpath[1]}/_kanto-cm\"\n# macOS:\n$ kanto-cm completion zsh > /usr/local/share/zsh/site-functions/_kanto-cm\n\nYou will need to start a new shell for this setup to take effect.",
        true,
    ),
];

/// The `completion` command and its four subcommands.
pub fn command() -> Cmd {
    let mut c = Cmd::new(
        "completion",
        "completion",
        "generate the autocompletion script for the specified shell",
    );
    c.long = "\nGenerate the autocompletion script for kanto-cm for the specified shell.\nSee each sub-command's help for details on how to use the generated script.\n".into();
    c.runnable = false;
    c.silence_usage = false;
    c.subs = SHELLS
        .iter()
        .map(|(shell, long, flags_in_use_line)| {
            let short: &'static str = match *shell {
                "bash" => "generate the autocompletion script for bash",
                "fish" => "generate the autocompletion script for fish",
                "powershell" => "generate the autocompletion script for powershell",
                _ => "generate the autocompletion script for zsh",
            };
            let mut s = Cmd::new(shell, shell, short);
            s.long = long.to_string();
            s.args = Args::None;
            s.silence_usage = false;
            s.flags_in_use_line = *flags_in_use_line;
            s.flags = vec![Flag::new(
                "no-descriptions",
                Kind::Bool,
                "false",
                "disable completion descriptions",
            )];
            s
        })
        .collect();
    c
}

/// The fixed values of a flag, for completion.
fn values(flag: &str) -> &'static [&'static str] {
    match flag {
        "rp" => &["no", "always", "unless-stopped", "on-failure"],
        "network" => &["bridge", "host"],
        "log-driver" => &["json-file", "none"],
        "log-mode" => &["blocking", "non-blocking"],
        _ => &[],
    }
}

fn flag_words(flags: &[Flag]) -> Vec<String> {
    let mut v = Vec::new();
    for f in flags {
        v.push(format!("--{}", f.name));
        if let Some(c) = f.short {
            v.push(format!("-{c}"));
        }
    }
    v
}

fn all_flags(root: &Cmd, c: &Cmd) -> Vec<Flag> {
    let mut v = c.flags.clone();
    v.push(Flag::new("help", Kind::Bool, "false", "help").short('h'));
    v.extend(root.persistent.iter().copied());
    v
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim_end()
}

/// The script for `shell`.
pub fn script(root: &Cmd, shell: &str, descriptions: bool) -> Result<String, String> {
    match shell {
        "bash" => Ok(bash(root)),
        "zsh" => Ok(format!(
            "#compdef kanto-cm\n# zsh completion for kanto-cm (leda-cm): the bash completion through bashcompinit.\nautoload -U +X bashcompinit && bashcompinit\n{}",
            bash(root)
        )),
        "fish" => Ok(fish(root, descriptions)),
        "powershell" => Ok(powershell(root)),
        other => Err(format!("unknown shell {other}")),
    }
}

fn bash(root: &Cmd) -> String {
    let value_flags: Vec<String> = {
        let mut v = Vec::new();
        for c in std::iter::once(root).chain(root.subs.iter()) {
            for f in all_flags(root, c).iter().filter(|f| f.kind != Kind::Bool) {
                v.extend(flag_words(std::slice::from_ref(f)));
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    };
    let commands: Vec<&str> = root
        .subs
        .iter()
        .filter(|c| !c.hidden)
        .map(|c| c.name)
        .collect();
    let mut s = String::new();
    s.push_str("# bash completion for kanto-cm (leda-cm)\n");
    s.push_str("_kanto_cm() {\n    local cur prev cmd i w\n");
    s.push_str("    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n    prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n");
    let _ = writeln!(s, "    local value_flags=\" {} \"", value_flags.join(" "));
    s.push_str("    cmd=\"\"\n    i=1\n    while [ \"$i\" -lt \"$COMP_CWORD\" ]; do\n        w=\"${COMP_WORDS[i]}\"\n        if [[ \"$w\" == -* ]]; then\n            [[ \"$w\" != *=* && \"$value_flags\" == *\" $w \"* ]] && i=$((i + 1))\n        elif [ -z \"$cmd\" ]; then\n            cmd=\"$w\"\n        fi\n        i=$((i + 1))\n    done\n");
    s.push_str("    case \"$prev\" in\n");
    for name in ["rp", "network", "log-driver", "log-mode"] {
        let _ = writeln!(
            s,
            "    --{name}) COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")); return 0 ;;",
            values(name).join(" ")
        );
    }
    s.push_str("    esac\n    local words\n    case \"$cmd\" in\n");
    let _ = writeln!(
        s,
        "    \"\") words=\"{} {}\" ;;",
        commands.join(" "),
        flag_words(&all_flags(root, root)).join(" ")
    );
    for c in root.subs.iter().filter(|c| !c.hidden) {
        let mut words = flag_words(&all_flags(root, c));
        words.extend(c.subs.iter().map(|s| s.name.to_string()));
        if c.name == "help" {
            words.extend(commands.iter().map(|c| c.to_string()));
        }
        let _ = writeln!(s, "    {}) words=\"{}\" ;;", c.name, words.join(" "));
    }
    s.push_str("    *) words=\"\" ;;\n    esac\n");
    s.push_str("    if [[ \"$cur\" == -* || -z \"$cmd\" || \"$cmd\" == completion || \"$cmd\" == help ]]; then\n        COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n    else\n        COMPREPLY=()\n    fi\n    return 0\n}\n");
    s.push_str("complete -o default -F _kanto_cm kanto-cm\n");
    s
}

fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn fish(root: &Cmd, descriptions: bool) -> String {
    let desc = |text: &str| {
        if descriptions {
            format!(" -d {}", fish_quote(first_line(text)))
        } else {
            String::new()
        }
    };
    let mut s = String::from("# fish completion for kanto-cm (leda-cm)\ncomplete -c kanto-cm -e\n");
    for f in &root.persistent {
        let _ = writeln!(
            s,
            "complete -c kanto-cm -l {}{}{}",
            f.name,
            if f.kind == Kind::Bool { "" } else { " -r" },
            desc(f.usage)
        );
    }
    for c in root.subs.iter().filter(|c| !c.hidden) {
        let _ = writeln!(
            s,
            "complete -c kanto-cm -f -n __fish_use_subcommand -a {}{}",
            c.name,
            desc(c.short)
        );
        let cond = format!("-n '__fish_seen_subcommand_from {}'", c.name);
        for f in &c.flags {
            let mut line = format!("complete -c kanto-cm {cond} -l {}", f.name);
            if let Some(sh) = f.short {
                let _ = write!(line, " -s {sh}");
            }
            if f.kind != Kind::Bool {
                line.push_str(" -r");
                let v = values(f.name);
                if !v.is_empty() {
                    let _ = write!(line, " -f -a {}", fish_quote(&v.join(" ")));
                }
            }
            line.push_str(&desc(f.usage));
            s.push_str(&line);
            s.push('\n');
        }
        for sub in &c.subs {
            let _ = writeln!(
                s,
                "complete -c kanto-cm -f {cond} -a {}{}",
                sub.name,
                desc(sub.short)
            );
        }
    }
    s
}

fn powershell(root: &Cmd) -> String {
    let list = |words: Vec<String>| {
        words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = String::from("# powershell completion for kanto-cm (leda-cm)\nRegister-ArgumentCompleter -Native -CommandName 'kanto-cm' -ScriptBlock {\n    param($wordToComplete, $commandAst, $cursorPosition)\n    $table = @{\n");
    let mut top: Vec<String> = root
        .subs
        .iter()
        .filter(|c| !c.hidden)
        .map(|c| c.name.to_string())
        .collect();
    top.extend(flag_words(&all_flags(root, root)));
    let _ = writeln!(s, "        '' = @({})", list(top));
    for c in root.subs.iter().filter(|c| !c.hidden) {
        let mut words = flag_words(&all_flags(root, c));
        words.extend(c.subs.iter().map(|x| x.name.to_string()));
        let _ = writeln!(s, "        '{}' = @({})", c.name, list(words));
    }
    s.push_str("    }\n    $words = @($commandAst.CommandElements | Select-Object -Skip 1 | ForEach-Object { $_.ToString() })\n    $cmd = $words | Where-Object { $_ -notlike '-*' -and $_ -ne $wordToComplete } | Select-Object -First 1\n    if (-not $cmd -or -not $table.ContainsKey($cmd)) { $cmd = '' }\n    $table[$cmd] | Where-Object { $_ -like \"$wordToComplete*\" } | ForEach-Object {\n        [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)\n    }\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_script_knows_commands_flags_and_values() {
        let root = super::super::tree();
        let s = script(&root, "bash", true).unwrap();
        assert!(s.contains("complete -o default -F _kanto_cm kanto-cm"));
        assert!(
            s.contains("    create) words=\"--name -n --t --i --privileged --rp"),
            "{s}"
        );
        assert!(s.contains("--rp) COMPREPLY=($(compgen -W \"no always unless-stopped on-failure\""));
        assert!(s.contains(" --host ") && s.contains(" --timeout "));
        let fish = script(&root, "fish", false).unwrap();
        assert!(
            fish.contains("-a create\n") && !fish.contains(" -d "),
            "{fish}"
        );
        assert!(script(&root, "zsh", true)
            .unwrap()
            .starts_with("#compdef kanto-cm\n"));
        assert!(script(&root, "powershell", true)
            .unwrap()
            .contains("'create' = @('--name', '-n'"));
    }
}
