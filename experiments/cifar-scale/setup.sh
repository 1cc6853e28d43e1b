# Sourced by run.sh and plan-vit-b16.sh: builds the binaries (unless BIN names built
# ones), and makes the synthetic CIFAR-100 under runs/cifar-scale once.
BIN=${BIN:-target/release}
work=runs/cifar-scale
out=results/search/cifar-scale
if [ "$BIN" = target/release ]; then
  cargo build --release -p cryptpeft-cli -p cryptpeft-search
fi
mkdir -p "$work" "$out"
[ -f "$work/synthetic-cifar-100/test.bin" ] ||
  python3 experiments/cifar-scale/make-synthetic-cifar100.py "$work/synthetic-cifar-100"
