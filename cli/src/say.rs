//! Output for people on standard output. `println!` panics when the reader goes away
//! (`cryptpeft cost ... | head`); here a closed pipe ends the output quietly, and any
//! other write error becomes the command's error.

/// `println!` that returns early with the write's error, and ignores a closed pipe.
macro_rules! say {
    ($($arg:tt)*) => {
        match std::io::Write::write_fmt(
            &mut std::io::stdout(),
            format_args!("{}\n", format_args!($($arg)*)),
        ) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(format!("standard output: {e}").into())
            }
            _ => {}
        }
    };
}
pub(crate) use say;
