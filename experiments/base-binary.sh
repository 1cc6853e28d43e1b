# Sourced by the before/after experiments: builds `cryptpeft` at commit $base in a
# worktree under target/ (once: the binary is kept as target/base-bin/cryptpeft-$base)
# and at this tree, with cargo profile $profile, and sets $before and $after to the two
# binaries. BASE_TARGET puts the base's build elsewhere; a target directory shared with
# this tree also shares the dependencies' artifacts.
dir=$profile; [ "$profile" = dev ] && dir=debug
tree=target/base-$base-src
target=${BASE_TARGET:-$PWD/target/base}
mine=${CARGO_TARGET_DIR:-$PWD/target}
before=target/base-bin/cryptpeft-$base
after=$mine/$dir/cryptpeft
[ -d "$tree" ] || git worktree add --detach "$tree" "$base"
mkdir -p target/base-bin
# Cargo names a workspace crate's artifacts by its path inside the workspace, so two
# trees sharing a target directory share them: touching a tree's sources makes cargo
# rebuild from that tree rather than reuse the other's.
if [ ! -x "$before" ]; then
  (cd "$tree" && find . -name '*.rs' -not -path './target/*' -exec touch {} + &&
    CARGO_TARGET_DIR="$target" cargo build --profile "$profile" -p cryptpeft-cli)
  cp "$target/$dir/cryptpeft" "$before"
fi
find types private-eval deploy cost-model train cli search -name '*.rs' -exec touch {} +
cargo build --profile "$profile" -p cryptpeft-cli
