//! `--plan-only`: what a space's search would need in each mode (feature cache in
//! memory, on disk, population training, and the paper's backbone-per-candidate) before
//! anything is trained: memory, disk, backbone image passes and time, from the workload
//! and two measurements on this machine (the backbone's seconds per image on one
//! batch, and an adapter's training seconds per image for the space's smallest, middle
//! and largest candidates).

use std::path::Path;
use std::time::Instant;

use cryptpeft_train::cache::CacheRequest;
use cryptpeft_train::data::{ImageSet, Preprocess, Split};
use cryptpeft_train::fit::Source;
use cryptpeft_train::fit_owc;
use cryptpeft_types::AdapterSpec;

use crate::error::{Error, Result};
use crate::eval;
use crate::genes::Space;
use crate::mode::{self, Workload};
use crate::space::SpaceFile;

/// One mode's needs.
pub struct Row {
    pub mode: String,
    pub memory_gb: f64,
    pub disk_gb: f64,
    /// Images through the backbone over the whole search.
    pub backbone_images: f64,
    pub hours: f64,
}

/// The plan: the workload's measured rates and every mode's needs.
pub struct Plan {
    pub backbone_s_per_image: f64,
    /// Training seconds per image of the smallest, middle and largest candidate.
    pub adapter_s_per_image: [f64; 3],
    pub trainings: usize,
    pub candidate_epochs: f64,
    pub rows: Vec<Row>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
    /// What a run here would do, or why it would refuse.
    pub choice: String,
}

/// Trainings per rung of successive halving: `n0, n0/eta, ...` summing to `budget`.
fn per_rung(budget: usize, rungs: &[usize], eta: usize) -> Vec<f64> {
    let weights: Vec<f64> = (0..rungs.len())
        .map(|k| (eta as f64).powi(-(k as i32)))
        .collect();
    let n0 = budget as f64 / weights.iter().sum::<f64>();
    weights.iter().map(|w| n0 * w).collect()
}

/// Plans `space` on this machine, for a run directory on the file system of `dir`.
pub fn plan(space: &SpaceFile, dir: &Path, progress: bool) -> Result<Plan> {
    let vit = eval::load_backbone(space)?;
    let spec = vit.spec.clone();
    let classes = space.data.num_classes();
    let genomes = Space::new(&space.genes, &spec, classes)?;
    let max_scope = *space.genes.scope.iter().max().expect("checked non-empty");
    let first = spec.layers - max_scope.min(spec.layers);
    let all = space.data.load(Split::Train, space.seed)?;
    let test = space.data.load(Split::Test, space.seed)?;
    if all.len() < 2 {
        return Err(Error::Other("data: fewer than 2 training images".into()));
    }
    let n_val = eval::validation_count(all.len(), space.validation);
    let (train, val) = (all.len() - n_val, n_val);
    let w = Workload {
        spec: &spec,
        first,
        train,
        val,
        test: test.len(),
        pixel_bytes: 4 * (all.images.len() + test.images.len()),
    };
    let memory = space
        .cache
        .memory_gb
        .map(|g| g * 1e9)
        .or(cryptpeft_types::memory::available_bytes());
    let disk = dir
        .ancestors()
        .find(|d| d.exists())
        .and_then(mode::free_disk_bytes);
    let choice = match mode::choose(space, &w, memory, disk) {
        Ok((_, why)) => format!("a run here would use {why}"),
        Err(e) => format!("a run here would refuse: {e}"),
    };
    // Two training batches of real images, their states computed once (timed).
    let bs = space.fidelity.batch_size.max(1);
    let sample: Vec<usize> = (0..(2 * bs).min(all.len())).collect();
    let sample = all.select(&sample);
    drop(all);
    let pre = Preprocess::new(spec.image_size, spec.channels, &space.data);
    let device = space.device.device()?;
    let (feats, info) = cache_of(&vit, &sample, &pre, first, progress).get(&device)?;
    let backbone_s = info.seconds / sample.len() as f64;
    // The smallest, middle and largest candidate by rank x scope x blocks.
    let mut specs: Vec<AdapterSpec> = genomes.valid().iter().map(|g| genomes.spec(g)).collect();
    specs.sort_by_key(|s| s.rank * s.scope * s.blocks);
    let picks = [&specs[0], &specs[specs.len() / 2], &specs[specs.len() - 1]];
    let final_norm = cryptpeft_train::final_norm_init(&vit);
    let mut recipe = eval::recipe(space, picks[0], 1);
    recipe.progress = false;
    let mut adapter_s = [0.0; 3];
    for (k, s) in picks.iter().enumerate() {
        if progress {
            eprintln!("timing {} on {} images", s.label(), sample.len());
        }
        let start = Instant::now();
        let src = Source::Cached(&feats);
        let fit = fit_owc(
            std::slice::from_ref(*s),
            &spec,
            (&final_norm.0, &final_norm.1),
            classes,
            &src,
            &src,
            &recipe,
            &[],
        )?;
        fit.into_iter()
            .next()
            .expect("one")
            .map_err(|e| Error::Other(format!("{}: {e}", s.label())))?;
        adapter_s[k] = start.elapsed().as_secs_f64() / sample.len() as f64;
    }
    let budget = space.budget.evaluations.unwrap_or(genomes.valid().len());
    let rungs = space.fidelity.rungs();
    let counts = per_rung(budget, &rungs, space.fidelity.eta);
    let candidate_epochs: f64 = counts.iter().zip(&rungs).map(|(n, &e)| n * e as f64).sum();
    let group = space.cache.group.unwrap_or(space.population) as f64;
    let groups_epochs: f64 = counts
        .iter()
        .zip(&rungs)
        .map(|(n, &e)| (n / group).ceil() * e as f64)
        .sum();
    let images = (w.train + w.val + w.test) as f64;
    let seen = (w.train + w.val) as f64;
    // Adapters train (and are scored) on every image of each epoch, whatever the mode.
    let adapters = candidate_epochs * seen * adapter_s[1];
    let hours = |passes: f64| (passes * backbone_s + adapters) / 3600.0;
    let gb = 1e9;
    let cache_row = |name: &str, bytes: usize, disk: bool| {
        let c = w.cache_bytes(bytes);
        Row {
            mode: name.into(),
            memory_gb: if disk {
                w.pixel_bytes as f64
            } else {
                c + w.pixel_bytes as f64
            } / gb,
            disk_gb: if disk { c / gb } else { 0.0 },
            backbone_images: images,
            hours: hours(images),
        }
    };
    let population = groups_epochs * seen + w.test as f64;
    let paper = candidate_epochs * seen + w.test as f64;
    let rows = vec![
        cache_row("cache in memory, f32", 4, false),
        cache_row("cache in memory, f16", 2, false),
        cache_row("cache on disk, f32", 4, true),
        cache_row("cache on disk, f16", 2, true),
        Row {
            mode: format!("population training, groups of {group}"),
            memory_gb: w.population_bytes() / gb,
            disk_gb: 0.0,
            backbone_images: population,
            hours: hours(population),
        },
        Row {
            mode: "backbone per candidate (the paper's)".into(),
            memory_gb: w.population_bytes() / gb,
            disk_gb: 0.0,
            backbone_images: paper,
            hours: hours(paper),
        },
    ];
    Ok(Plan {
        backbone_s_per_image: backbone_s,
        adapter_s_per_image: adapter_s,
        trainings: budget,
        candidate_epochs,
        rows,
        memory,
        disk,
        choice,
    })
}

fn cache_of<'a>(
    vit: &'a cryptpeft_train::backbone::Vit,
    set: &'a ImageSet,
    pre: &'a Preprocess,
    first: usize,
    progress: bool,
) -> CacheRequest<'a> {
    CacheRequest {
        vit,
        vit_id: "plan",
        set,
        describe: "plan",
        pre,
        first,
        views: 0,
        seed: 0,
        dir: None,
        progress,
        storage: Default::default(),
    }
}

impl Plan {
    /// The plan as a Markdown table with its measured rates.
    pub fn markdown(&self, space: &SpaceFile) -> String {
        let [a, b, c] = self.adapter_s_per_image.map(|s| 1e3 * s);
        let mut out = format!(
            "{}: {} trainings, {:.0} candidate-epochs. Measured here: the backbone {:.2} ms \
             per image; an adapter's training {a:.2} / {b:.2} / {c:.2} ms per image \
             (smallest / middle / largest candidate; times below at the middle one). \
             Memory {}, free disk {}.\n\n\
             | mode | memory GB | disk GB | backbone images | hours |\n\
             | --- | ---: | ---: | ---: | ---: |\n",
            space.name,
            self.trainings,
            self.candidate_epochs,
            1e3 * self.backbone_s_per_image,
            self.memory
                .map_or("unknown".into(), |m| format!("{:.1} GB", m / 1e9)),
            self.disk
                .map_or("unknown".into(), |d| format!("{:.1} GB", d / 1e9)),
        );
        for r in &self.rows {
            out += &format!(
                "| {} | {:.2} | {:.2} | {:.0} | {:.3} |\n",
                r.mode, r.memory_gb, r.disk_gb, r.backbone_images, r.hours
            );
        }
        out
    }
}

/// Prints the plan of `space` for a run directory `dir`.
pub fn print(space: &SpaceFile, dir: &Path, progress: bool) -> Result<()> {
    let p = plan(space, dir, progress)?;
    crate::say::say!("{}\n{}", p.markdown(space), p.choice);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_share_the_budget_by_eta() {
        let n = per_rung(13, &[5, 20], 3);
        assert!(
            (n[0] - 9.75).abs() < 1e-9 && (n[1] - 3.25).abs() < 1e-9,
            "{n:?}"
        );
        assert_eq!(per_rung(12, &[1], 3), vec![12.0]);
    }
}
