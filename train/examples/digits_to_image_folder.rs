//! Writes the digits set as an ImageFolder of 8x8 grayscale PNGs (`train/<label>/`,
//! `test/<label>/`, the same split as the CSV loader): a real folder to try the
//! ImageFolder reader on.
//!
//! `cargo run --release -p cryptpeft-train --example digits_to_image_folder -- OUT_DIR`

use cryptpeft_train::data::{DataConfig, DatasetKind, Split};

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: OUT_DIR"));
    let cfg = DataConfig::new(DatasetKind::Digits);
    for (split, name) in [(Split::Train, "train"), (Split::Test, "test")] {
        let set = cfg.load(split, 0).expect("the digits set");
        for i in 0..set.len() {
            let dir = out.join(name).join(set.labels[i].to_string());
            std::fs::create_dir_all(&dir).expect("creating the class folder");
            let px: Vec<u8> = set
                .image(i)
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect();
            image::GrayImage::from_raw(set.width as u32, set.height as u32, px)
                .expect("an 8x8 image")
                .save(dir.join(format!("{i:05}.png")))
                .expect("writing a PNG");
        }
    }
    println!("wrote {}", out.display());
}
