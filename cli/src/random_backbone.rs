//! `random-backbone`: a freshly initialised backbone where only its time and memory
//! matter.

use std::path::PathBuf;

use cryptpeft_train::backbone::Vit;
use cryptpeft_train::cpu;

/// Arguments of `random-backbone`.
#[derive(clap::Args)]
pub struct RandomBackboneArgs {
    /// Backbone shape (vit-b16, vit-mini, ...), changed by the options below.
    #[arg(long, default_value = "vit-b16")]
    backbone: String,
    /// Image side in pixels.
    #[arg(long)]
    image: Option<usize>,
    /// Patch side in pixels.
    #[arg(long)]
    patch: Option<usize>,
    /// Hidden width d.
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    heads: Option<usize>,
    /// MLP width (default: 4 x width when the width changes).
    #[arg(long)]
    mlp: Option<usize>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Writes a freshly initialised backbone in torchvision's layout: a stand-in for a
/// pretrained one where only its time and memory matter.
pub fn random_backbone(a: RandomBackboneArgs) -> Result<(), String> {
    let mut spec =
        cryptpeft_types::BackboneSpec::by_name(&a.backbone).map_err(|e| e.to_string())?;
    let changed = [a.image, a.patch, a.width, a.layers, a.heads, a.mlp]
        .iter()
        .any(Option::is_some);
    spec.image_size = a.image.unwrap_or(spec.image_size);
    spec.patch_size = a.patch.unwrap_or(spec.patch_size);
    spec.layers = a.layers.unwrap_or(spec.layers);
    spec.heads = a.heads.unwrap_or(spec.heads);
    if let Some(w) = a.width {
        spec.hidden_dim = w;
        spec.mlp_dim = 4 * w;
    }
    spec.mlp_dim = a.mlp.unwrap_or(spec.mlp_dim);
    if changed {
        spec.name = format!(
            "random-vit-i{}-p{}-d{}-l{}-h{}",
            spec.image_size, spec.patch_size, spec.hidden_dim, spec.layers, spec.heads
        );
    }
    if spec.image_size % spec.patch_size != 0 || spec.hidden_dim % spec.heads != 0 {
        return Err(format!(
            "{}: the patch must divide the image and the heads the width",
            spec.name
        ));
    }
    eprintln!("{}: {:?}", a.out.display(), spec);
    Vit::init(&spec, 1000, a.seed, &cpu())
        .save(&a.out)
        .map_err(|e| e.to_string())
}
