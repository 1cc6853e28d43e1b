//! The hand-written training loop (`backward` -> `GradientsParams::from_grads` ->
//! `optim.step`), for one model or for a group that shares every batch.
//!
//! A group member trains exactly as it would alone: the same shuffled order, the same
//! cached views and augmentations, the same learning-rate schedule, its own optimizer.
//! What the group shares is each batch's input, so where the input is the frozen
//! backbone's hidden states of images, the backbone runs once per batch for all of them
//! (population training: memory holds one batch of hidden states, not a cache).
//!
//! A member with a snapshot folder saves its state after every epoch and, started again
//! after a kill, resumes from it ([`crate::resume`]); a group resumes at its least advanced
//! member's epoch, and members further on wait for it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backbone::Vit;
use crate::baselines::{PeftModel, TailModel};
use crate::cache::{progress_bar, FeatureSet};
use crate::config::{EpochStats, OptimizerConfig, TrainConfig};
use crate::data::{random_resized_crop_flip, ImageSet, Preprocess};
use crate::error::{Result, TrainError};
use crate::fault;
use crate::owc::OwcModel;
use crate::resume::{self, Streams};
use crate::st::HostTensor;

/// Where a batch's inputs come from.
pub enum Source<'a> {
    /// Hidden states from the feature cache.
    Cached(&'a FeatureSet),
    /// Images, preprocessed (and, in training, optionally augmented) batch by batch;
    /// with `frozen`, run through the frozen backbone to hidden states.
    Images {
        set: &'a ImageSet,
        pre: &'a Preprocess,
        frozen: Option<&'a Vit>,
    },
}

/// A batch: backbone hidden states `x_from .. x_L` or images.
#[derive(Clone)]
pub enum Input {
    States(Vec<Tensor<3>>),
    Images(Box<Tensor<4>>),
}

impl Input {
    /// The input of a member reading from state `from`, out of a batch read from `shared`.
    fn for_member(&self, shared: Option<usize>, from: Option<usize>) -> Input {
        match (self, shared, from) {
            (Input::States(s), Some(a), Some(b)) => Input::States(s[b - a..].to_vec()),
            _ => self.clone(),
        }
    }
}

impl Source<'_> {
    pub fn images(&self) -> usize {
        match self {
            Source::Cached(f) => f.images(),
            Source::Images { set, .. } => set.len(),
        }
    }

    /// Row of image `i` (a random view when the cache has several).
    fn row(&self, i: usize, rng: Option<&mut ChaCha8Rng>) -> usize {
        match (self, rng) {
            (Source::Cached(f), Some(r)) if f.views > 1 => i * f.views + r.random_range(0..f.views),
            (Source::Cached(f), _) => i * f.views,
            _ => i,
        }
    }

    fn label(&self, row: usize) -> u32 {
        match self {
            Source::Cached(f) => f.labels[row],
            Source::Images { set, .. } => set.labels[row],
        }
    }

    /// The input of rows `rows` from state `from`; images are augmented with `augment`.
    fn input(
        &self,
        rows: &[usize],
        from: Option<usize>,
        augment: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Input {
        match self {
            Source::Cached(f) => Input::States(f.batch(rows, from.expect("state index"), device)),
            Source::Images { set, pre, frozen } => {
                let (c, h, w) = (set.channels, set.height, set.width);
                let s = pre.image_size;
                let mut data = Vec::with_capacity(rows.len() * pre.channels * s * s);
                let mut augment = augment;
                for &r in rows {
                    match augment.as_deref_mut() {
                        Some(rng) => {
                            let a = random_resized_crop_flip(set.image(r), c, h, w, rng);
                            data.extend(pre.apply(&a, c, h, w));
                        }
                        None => data.extend(pre.apply(set.image(r), c, h, w)),
                    }
                }
                let dims = [rows.len(), pre.channels, s, s];
                match frozen {
                    None => Input::Images(Box::new(Tensor::from_data(
                        TensorData::new(data, dims),
                        device,
                    ))),
                    Some(vit) => {
                        // The backbone runs where its weights are; its states move to
                        // the model's device.
                        let x = Tensor::from_data(
                            TensorData::new(data, dims),
                            &vit.conv_b.val().device(),
                        );
                        let states = vit.hidden_states(x);
                        Input::States(
                            states[from.expect("state index")..]
                                .iter()
                                .map(|s| HostTensor::from_tensor(s).to_tensor(device))
                                .collect(),
                        )
                    }
                }
            }
        }
    }
}

/// A model the loop can train.
pub trait Net: Module {
    fn logits(&self, input: Input) -> Tensor<2>;
}

impl Net for OwcModel {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::States(s) => self.forward(&s),
            Input::Images(_) => unreachable!("OWC reads hidden states"),
        }
    }
}

impl Net for TailModel {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::States(s) => self.forward(s[0].clone()),
            Input::Images(_) => unreachable!("reads hidden states"),
        }
    }
}

impl Net for PeftModel {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::States(s) => self.forward(s[0].clone()),
            Input::Images(_) => unreachable!("reads hidden states"),
        }
    }
}

impl Net for Vit {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::Images(x) => self.forward(*x),
            Input::States(s) => {
                let l = self.spec.layers;
                let from = l + 1 - s.len();
                self.classify(self.run_layers(s[0].clone(), from, l))
            }
        }
    }
}

fn cross_entropy(logits: Tensor<2>, labels: &[u32], device: &Device) -> Tensor<1> {
    let [b, c] = logits.dims();
    let mut onehot = vec![0f32; b * c];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * c + l as usize] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, c]), device);
    (log_softmax(logits, 1) * onehot).sum_dim(1).mean().neg()
}

fn argmax_rows(logits: &HostTensor) -> Vec<u32> {
    let c = logits.shape[1];
    logits
        .data
        .chunks(c)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0 as u32
        })
        .collect()
}

/// Accuracies of `models` (already `valid()`, each with the state it reads first) on a
/// source, in batches: the batch's input is made once for all of them, and the models
/// read it on `threads` threads.
pub fn evaluate<M: Net + Sync>(
    models: &[(&M, Option<usize>)],
    src: &Source,
    batch: usize,
    threads: usize,
    device: &Device,
) -> Vec<f64> {
    let n = src.images();
    if models.is_empty() {
        return Vec::new();
    }
    let shared = models.iter().filter_map(|m| m.1).min();
    let mut correct = vec![0usize; models.len()];
    for start in (0..n).step_by(batch.max(1)) {
        let rows: Vec<usize> = (start..(start + batch).min(n))
            .map(|i| src.row(i, None))
            .collect();
        let input = src.input(&rows, shared, None, device);
        let counts: Vec<(&mut usize, &(&M, Option<usize>))> =
            correct.iter_mut().zip(models).collect();
        side_by_side(counts, threads, |(count, (model, from))| {
            let logits = HostTensor::from_tensor(&model.logits(input.for_member(shared, *from)));
            *count += argmax_rows(&logits)
                .iter()
                .zip(&rows)
                .filter(|(p, &r)| **p == src.label(r))
                .count();
        });
    }
    correct
        .into_iter()
        .map(|c| c as f64 / n.max(1) as f64)
        .collect()
}

/// The recipe's optimizer, fresh.
fn optimizer(cfg: &OptimizerConfig) -> ModuleOptimizer {
    match cfg {
        OptimizerConfig::Sgd {
            momentum,
            weight_decay,
            ..
        } => SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: *momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .with_weight_decay(Some(WeightDecayConfig::new(*weight_decay as f32)))
            .init(),
        OptimizerConfig::Adamw { weight_decay, .. } => AdamWConfig::new()
            .with_weight_decay(*weight_decay as f32)
            .init(),
    }
}

/// One model of a group, the hidden state it reads first (`None`: images) and the folder
/// of its per-epoch snapshots (`None`: none).
pub struct Member<M> {
    pub model: M,
    pub from: Option<usize>,
    pub snapshot: Option<PathBuf>,
}

/// A member's result: its trained model and epochs, or why its training failed.
pub type Trained<M> = std::result::Result<(M, Vec<EpochStats>), String>;

/// A member while it trains.
struct Live<M> {
    model: Option<M>,
    from: Option<usize>,
    optim: ModuleOptimizer,
    snapshot: Option<PathBuf>,
    stats: Vec<EpochStats>,
    failed: Option<String>,
    loss_sum: f64,
    correct: usize,
}

impl<M: Net> Live<M> {
    /// One optimizer step on a batch; a panic fails the member alone.
    fn step(&mut self, input: Input, labels: &[u32], lr: f64, device: &Device) {
        let model = self.model.take().expect("a live member has its model");
        let optim = &mut self.optim;
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            let logits = model.logits(input);
            let host = HostTensor::from_tensor(&logits.clone().detach());
            let correct = argmax_rows(&host)
                .iter()
                .zip(labels)
                .filter(|(p, l)| p == l)
                .count();
            let loss = cross_entropy(logits, labels, device);
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let model = optim.step(lr, model, grads);
            // An affine norm's running statistics are kept per thread until synced
            // (burn's `RunningState`), and a member may step on a different thread each
            // batch: syncing here, where the step ran, keeps them what one thread gives.
            let _ = model.valid();
            (model, loss_value, correct)
        }));
        match stepped {
            // Once the loss is NaN or infinite the weights are lost, and carrying on would
            // report chance accuracy as if it were a result.
            Ok((_, loss, _)) if !loss.is_finite() => {
                self.failed = Some(format!(
                    "diverged: the loss became {loss} in epoch {} (a lower learning rate or a norm may help)",
                    self.stats.len() + 1
                ))
            }
            Ok((model, loss, correct)) => {
                self.model = Some(model);
                self.loss_sum += loss * labels.len() as f64;
                self.correct += correct;
            }
            Err(p) => self.failed = Some(format!("training panicked: {}", panic_message(p))),
        }
    }
}

/// Runs `work` on every item on `threads` threads (on the caller's alone for one), each
/// thread taking the next item as it finishes one, so cheap and costly members balance.
fn side_by_side<T: Send>(items: Vec<T>, threads: usize, work: impl Fn(T) + Sync) {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        items.into_iter().for_each(work);
        return;
    }
    let queue = std::sync::Mutex::new(items.into_iter());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(item) = next() {
                    work(item);
                }
            });
        }
    });
}

impl<M: Module> Live<M> {
    /// Whether the member trains in `epoch` (it may have been snapshotted further on).
    fn trains(&self, epoch: usize) -> bool {
        self.failed.is_none() && self.stats.len() <= epoch
    }

    /// Saves the member's snapshot, if it keeps one; a failed save costs only the resume.
    fn save(&self, cfg: &TrainConfig, images: usize, streams: Streams) {
        let (Some(dir), Some(model)) = (&self.snapshot, &self.model) else {
            return;
        };
        let key = resume::key(cfg, images, model);
        if let Err(e) = resume::save(dir, &key, model, &self.optim, &self.stats, streams) {
            eprintln!("warning: no snapshot after epoch {}: {e}", self.stats.len());
        }
    }
}

/// Loads every member's latest snapshot; the group then starts at the least advanced
/// member's epoch, with that member's streams (`None`: from the start). A snapshot that
/// cannot be resumed is said and ignored.
fn resume_all<M: Module>(
    live: &mut [Live<M>],
    cfg: &TrainConfig,
    images: usize,
) -> Option<(usize, Streams)> {
    let mut streams = Vec::new();
    for m in live.iter_mut() {
        let (Some(dir), Some(model)) = (&m.snapshot, &m.model) else {
            continue;
        };
        let key = resume::key(cfg, images, model);
        match resume::load(dir, &key, model, optimizer(&cfg.optimizer)) {
            Ok(Some(r)) => {
                (m.model, m.optim) = (Some(r.model), r.optim);
                streams.push((r.stats.len(), r.streams));
                m.stats = r.stats;
            }
            Ok(None) => {}
            Err(e) => eprintln!("note: not resuming from {e}; training from the first epoch"),
        }
    }
    // A member without a snapshot starts the group at epoch 0.
    if streams.len() < live.len() {
        return None;
    }
    streams.into_iter().min_by_key(|s| s.0)
}

/// Nothing is left to train once every member has failed.
fn all_failed<M>(live: &[Live<M>]) -> bool {
    live.iter().all(|m| m.failed.is_some())
}

/// What a caught panic said.
pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Trains every member on the same batches; each gets what it would get alone. A member
/// whose step panics or whose loss stops being finite fails alone, saying why, and the
/// others go on.
pub fn fit_group<M: Net + Sync>(
    members: Vec<Member<M>>,
    train: &Source,
    test: &Source,
    cfg: &TrainConfig,
    device: &Device,
) -> Vec<Trained<M>> {
    let mut live: Vec<Live<M>> = members
        .into_iter()
        .map(|m| Live {
            model: Some(m.model),
            from: m.from,
            optim: optimizer(&cfg.optimizer),
            snapshot: m.snapshot,
            stats: Vec::new(),
            failed: None,
            loss_sum: 0.0,
            correct: 0,
        })
        .collect();
    let shared = live.iter().filter_map(|m| m.from).min();
    // A group's progress is its bar; a model alone also prints its epochs.
    let alone = live.len() == 1;
    let n = train.images();
    let bs = cfg.batch_size.max(1);
    let steps_per_epoch = n.div_ceil(bs);
    let total = (steps_per_epoch * cfg.epochs).max(1);
    let base_lr = cfg.optimizer.lr();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xe90c);
    // Augmentation draws from its own stream, so the order does not depend on it.
    let mut augment = cfg
        .augment
        .then(|| ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xa06e));
    let first = resume_all(&mut live, cfg, n);
    if let Some((epoch, streams)) = first {
        rng.set_word_pos(streams.order);
        if let (Some(a), Some(at)) = (augment.as_mut(), streams.augment) {
            a.set_word_pos(at);
        }
        if epoch < cfg.epochs {
            eprintln!("resuming at epoch {} of {}", epoch + 1, cfg.epochs);
        }
    }
    let first = first.map_or(0, |f| f.0);
    let inference = device.clone().without_autodiff();
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    };
    let mut step = first * steps_per_epoch;
    for epoch in first..cfg.epochs {
        if all_failed(&live) {
            break;
        }
        let bar = progress_bar(
            steps_per_epoch as u64,
            &match alone {
                true => format!("epoch {}", epoch + 1),
                false => format!("group of {}, epoch {}", live.len(), epoch + 1),
            },
            cfg.progress,
        );
        let start = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for m in &mut live {
            (m.loss_sum, m.correct) = (0.0, 0);
        }
        for chunk in order.chunks(bs) {
            // No member left to step: skip the rest of the epoch's backbone passes.
            if all_failed(&live) {
                break;
            }
            let rows: Vec<usize> = chunk
                .iter()
                .map(|&i| train.row(i, Some(&mut rng)))
                .collect();
            let labels: Vec<u32> = rows.iter().map(|&r| train.label(r)).collect();
            let lr = if cfg.cosine {
                0.5 * base_lr * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())
            } else {
                base_lr
            };
            let input = train.input(&rows, shared, augment.as_mut(), device);
            let trainees: Vec<&mut Live<M>> = live.iter_mut().filter(|m| m.trains(epoch)).collect();
            side_by_side(trainees, threads, |m| {
                m.step(input.for_member(shared, m.from), &labels, lr, device)
            });
            step += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let valid: Vec<(M, Option<usize>)> = live
            .iter()
            .filter(|m| m.trains(epoch))
            .map(|m| (m.model.as_ref().expect("live").valid(), m.from))
            .collect();
        let refs: Vec<(&M, Option<usize>)> = valid.iter().map(|(m, f)| (m, *f)).collect();
        let mut accuracies = evaluate(&refs, test, 200, threads, &inference).into_iter();
        let streams = Streams {
            order: rng.get_word_pos(),
            augment: augment.as_ref().map(|a| a.get_word_pos()),
        };
        for m in live.iter_mut().filter(|m| m.trains(epoch)) {
            let s = EpochStats {
                epoch: epoch + 1,
                loss: m.loss_sum / n.max(1) as f64,
                train_accuracy: m.correct as f64 / n.max(1) as f64,
                test_accuracy: accuracies.next().expect("one accuracy per live member"),
                seconds,
            };
            if cfg.progress && alone {
                eprintln!(
                    "epoch {:>3}  loss {:.4}  train acc {:.4}  test acc {:.4}  {:.2}s",
                    s.epoch, s.loss, s.train_accuracy, s.test_accuracy, s.seconds
                );
            }
            m.stats.push(s);
            m.save(cfg, n, streams);
        }
        fault::point("epoch");
    }
    live.into_iter()
        .map(|m| match m.failed {
            Some(why) => Err(why),
            None => Ok((m.model.expect("live"), m.stats)),
        })
        .collect()
}

/// Trains one model (a group of one).
pub fn fit<M: Net + Sync>(
    model: M,
    train: &Source,
    test: &Source,
    from: Option<usize>,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<(M, Vec<EpochStats>)> {
    let member = Member {
        model,
        from,
        snapshot: None,
    };
    let mut out = fit_group(vec![member], train, test, cfg, device);
    out.pop().expect("one member").map_err(TrainError::Training)
}
