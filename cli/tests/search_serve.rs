//! A front member exported by the search, served by `cryptpeft serve` and queried by
//! `cryptpeft infer` with the backbone's hidden states of real test images, predicts
//! the plaintext model's class on every image.

mod common;

use std::path::Path;
use std::process::Command;

use burn::tensor::{Tensor, TensorData};
use cryptpeft_train::data::{read_images, DataConfig, DatasetKind, Preprocess};
use cryptpeft_train::{cpu, owc};

use common::digits::{backbone_path, image_states, test_states};
use common::{dealer_and_server, BIN};

const IMAGES: usize = 6;

const SPACE: &str = "name: serve-test
backbone: vit-mini
data:
  dataset: digits
  max_train: 300
validation: 0.25
genes:
  heads: [1, 2]
  rank: [8, 16]
  scope: [1, 2]
fidelity:
  epochs: 3
networks: [lan]
population: 3
budget:
  evaluations: 5
constants: shipped
";

/// The most accurate member of the lan front.
fn searched_adapter(dir: &Path) -> std::path::PathBuf {
    let space = dir.join("space.yaml");
    std::fs::write(&space, SPACE).unwrap();
    let out = dir.join("run");
    let o = Command::new(BIN)
        .args(["search", "-q", "--space"])
        .arg(&space)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let front = std::fs::read_to_string(out.join("pareto_lan.csv")).unwrap();
    let last = front.lines().last().unwrap();
    out.join(last.rsplit(',').next().unwrap())
}

#[test]
fn a_searched_adapter_serves_real_images_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = searched_adapter(tmp.path());
    let model = owc::OwcModel::load(&ckpt, &cpu()).unwrap();
    let bb = model.backbone.clone();
    let data = DataConfig::new(DatasetKind::Digits);
    let (vit, test, states) = test_states(&data, IMAGES);
    let first = bb.layers - model.spec.scope;
    let plain: Vec<usize> = {
        let logits = model.forward(&states[first..]);
        let v: Vec<f32> = logits.into_data().try_to_vec::<f32>().unwrap();
        v.chunks(model.classes())
            .map(|r| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect()
    };

    let roles = dealer_and_server(&ckpt, &[]);
    let infer = || {
        let mut c = Command::new(BIN);
        c.args(["infer", "--server", &roles.saddr, "--dealer", &roles.daddr])
            .args(["--tls", &roles.keys, "--json"]);
        c
    };
    for (i, &want) in plain.iter().enumerate() {
        let hidden = image_states(&states[first..], i, &bb);
        let file = tmp.path().join(format!("hidden{i}.safetensors"));
        cryptpeft_private_eval::hidden::save(&file, &hidden).unwrap();
        let o = infer().arg("--hidden-states").arg(&file).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["predicted"].as_u64().unwrap() as usize, want, "image {i}");
    }

    // From image files: the client runs the backbone itself (`infer --images`). The
    // plaintext classes come from the same decoded files.
    let dir = tmp.path().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for i in 0..IMAGES {
        let px: Vec<u8> = test
            .image(i)
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        let f = dir.join(format!("{i}.png"));
        image::GrayImage::from_raw(test.width as u32, test.height as u32, px)
            .unwrap()
            .save(&f)
            .unwrap();
        files.push((f, 0));
    }
    let decoded = read_images(&files, bb.image_size).unwrap();
    let pixels = Preprocess::new(
        bb.image_size,
        bb.channels,
        &DataConfig::new(DatasetKind::ImageFolder),
    )
    .apply_set(&decoded, None);
    let states = vit.hidden_states(Tensor::<4>::from_data(
        TensorData::new(pixels, [IMAGES, bb.channels, bb.image_size, bb.image_size]),
        &cpu(),
    ));
    let logits = model.forward(&states[first..]);
    let v: Vec<f32> = logits.into_data().try_to_vec::<f32>().unwrap();
    let plain: Vec<usize> = v
        .chunks(model.classes())
        .map(|r| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
        .collect();
    // The client's backbone on the CPU, and (a build with `wgpu`) on burn-wgpu.
    let devices: &[&str] = if cfg!(feature = "wgpu") {
        &["cpu", "wgpu"]
    } else {
        &["cpu"]
    };
    for device in devices {
        let o = infer()
            .arg("--backbone")
            .arg(backbone_path())
            .args(["--device", device, "--images"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
        let got: Vec<usize> = r
            .iter()
            .map(|x| x["predicted"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got, plain, "classes from image files, backbone on {device}");
        assert!(r.iter().all(|x| x["backbone_s"].as_f64().unwrap() > 0.0));
    }
}
