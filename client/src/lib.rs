//! The client as a product: from image files (or a dataset's test images) through the
//! public backbone in burn to hidden states, streamed into the online phase with the
//! server and the dealer ([`cryptpeft_deploy::roles`]). The `cryptpeft` command's
//! `client --images`, `demo` and `load-test` use it.

mod images;
mod states;

pub use images::{image_paths, run, ImageReport};
pub use states::hidden_states;
