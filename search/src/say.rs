//! Output for people on standard output. `println!` panics when the reader goes away
//! (`cryptpeft-search report DIR | head`); here a closed pipe ends the output quietly,
//! and any other write error is reported like a file's.

use std::io::ErrorKind;
use std::path::Path;

use crate::error::{Error, Result};

/// `println!` that returns early with an error, and ignores a closed pipe.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::said(std::io::Write::write_fmt(
            &mut std::io::stdout(),
            format_args!("{}\n", format_args!($($arg)*)),
        ))?
    };
}
pub(crate) use say;

/// What a write to standard output means for the command.
pub(crate) fn said(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(Error::io(Path::new("standard output"), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_quiet_and_other_errors_are_not() {
        assert!(said(Ok(())).is_ok());
        assert!(said(Err(ErrorKind::BrokenPipe.into())).is_ok());
        let full = said(Err(std::io::Error::other("disk full")));
        assert!(full.unwrap_err().to_string().contains("standard output"));
    }
}
