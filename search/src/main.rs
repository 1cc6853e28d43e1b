//! `cryptpeft-search`: the search (the toolkit's main job).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cryptpeft_search::cli::SearchArgs::parse();
    match cryptpeft_search::cli::main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
