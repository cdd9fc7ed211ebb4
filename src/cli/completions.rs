//! `tangaroa completions SHELL`: a completion script for bash, zsh, fish, elvish or
//! PowerShell on stdout, generated from the same definitions clap parses with.

use super::{BadInput, Cli};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
#[command(after_help = "\
Install, for example:
  tangaroa completions bash > ~/.local/share/bash-completion/completions/tangaroa
  tangaroa completions zsh  > ~/.zfunc/_tangaroa     # with fpath+=~/.zfunc before compinit
  tangaroa completions fish > ~/.config/fish/completions/tangaroa.fish")]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<u8, BadInput> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "tangaroa", &mut out);
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| BadInput(format!("cannot write to stdout: {e}")))?;
    Ok(0)
}
