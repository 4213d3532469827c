//! Running other programs: headers, exit-status checks, and running as another user.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use anyhow::{bail, Context, Result};

/// Prints one line of xtask's own narration. The `==>` prefix sets it apart from the output of the
/// tools it runs; it goes to stderr, where cargo prints its own status lines, so the two interleave
/// in order.
pub fn say(message: impl std::fmt::Display) {
    eprintln!("==> {message}");
}

/// Runs `cmd` as a step of its own: a header line, the tool's output straight to the terminal, and
/// an error naming the command when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    say(&shown);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly, returning its combined output; when it fails, the error carries that output,
/// since it is the only explanation there is.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("`{shown}` failed ({}):\n{}", output.status, text.trim_end());
    }
    Ok(text)
}

/// Whether `cmd` runs and exits successfully, its output discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `cmd`, to be run as `user` instead of ourselves (unchanged when `user` is `None`). Only the
/// program and arguments carry over; set the directory and environment on the result. `runuser`
/// is preferred over `su` because it takes the arguments as they are, with no shell in between.
pub fn as_user(cmd: Command, user: Option<&str>) -> Command {
    let Some(user) = user else {
        return cmd;
    };
    if which("runuser").is_some() {
        let mut wrapped = Command::new("runuser");
        wrapped
            .args(["-u", user, "--"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        return wrapped;
    }
    let script = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| shell_quote(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut wrapped = Command::new("su");
    wrapped.args([user, "-s", "/bin/sh", "-c", &script]);
    wrapped
}

/// The first `name` on `PATH`, like the shell's `command -v`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether we run as root, which decides whether Postgres must be run as another user (initdb
/// refuses root) and whether missing packages may be installed.
pub fn is_root() -> bool {
    static IS_ROOT: OnceLock<bool> = OnceLock::new();
    *IS_ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
    })
}

/// Quotes `word` for a POSIX shell: single quotes, and `'\''` for a single quote inside.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// How a command is shown in headers and errors: the program's file name (so `$CARGO` shows as
/// `cargo`), then the arguments, quoted where a shell would need it.
fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    let program = program.file_name().unwrap_or(program.as_os_str());
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+".contains(c));
            if plain {
                word.into_owned()
            } else {
                shell_quote(&word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_commands_as_a_shell_would_read_them() {
        let mut cmd = Command::new("/home/me/.cargo/bin/cargo");
        cmd.args(["clippy", "--", "-D", "warnings", "it's", ""]);
        assert_eq!(display(&cmd), r"cargo clippy -- -D warnings 'it'\''s' ''");
    }
}
