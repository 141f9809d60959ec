//! Sudoku of size 4 (2x2 boxes) and 9 (3x3 boxes), with unique solutions by default.
//!
//! Generation fills an empty grid by randomized backtracking, then removes cells in random order,
//! putting a cell back whenever its removal would allow a second solution, until `givens` cells
//! remain. With `any_solution` the cells are removed without that check, so a puzzle may have
//! many solutions and any valid completion scores: the multi-modal answers on which decoding
//! several cells per step from independent marginals picks cells of different solutions. Greedy removal can get stuck above a low target; the generator then retries with fresh
//! grids and, failing that, keeps the puzzle with the fewest givens reached (always unique).
//! In practice 4x4 reaches any target down to the minimum of 4; 9x9 reaches 25 and above
//! reliably but usually stops at 22-24 when asked for fewer.
//!
//! Prompt: the puzzle row-major, one digit per cell, `0` for blanks (16 or 81 characters).
//! Response: the solution in the same layout.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{Example, Task, strip_decoded_tail};
use crate::error::{FlowError, Result};

/// Fresh grids tried when greedy removal stops above the requested givens.
const GENERATION_ATTEMPTS: usize = 8;

/// A Sudoku task of side 4 or 9.
#[derive(Debug, Clone)]
pub struct Sudoku {
    name: &'static str,
    size: usize,
    givens: usize,
    any_solution: bool,
}

impl Sudoku {
    /// `size` 4 or 9; `givens` defaults to 6 (4x4) or 30 (9x9) and must be at most `size²`;
    /// `any_solution` drops the uniqueness requirement.
    pub fn new(size: usize, givens: Option<usize>, any_solution: bool) -> Result<Sudoku> {
        let (name, default_givens) = match size {
            4 => ("sudoku4", 6),
            9 => ("sudoku9", 30),
            _ => {
                return Err(FlowError::argument(
                    "size",
                    format!("sudoku size must be 4 or 9, got {size}"),
                ));
            }
        };
        let givens = givens.unwrap_or(default_givens);
        if givens == 0 || givens > size * size {
            return Err(FlowError::argument(
                "givens",
                format!(
                    "a {size}x{size} sudoku needs 1..={} givens, got {givens}",
                    size * size
                ),
            ));
        }
        Ok(Sudoku {
            name,
            size,
            givens,
            any_solution,
        })
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn givens(&self) -> usize {
        self.givens
    }

    /// A puzzle (0 = blank) with a unique solution (unless `any_solution`), and its solution.
    pub fn puzzle(&self, rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
        if self.any_solution {
            let solution = random_grid(self.size, rng);
            let mut puzzle = solution.clone();
            let mut order: Vec<usize> = (0..puzzle.len()).collect();
            order.shuffle(rng);
            for &cell in &order[self.givens..] {
                puzzle[cell] = 0;
            }
            return (puzzle, solution);
        }
        let mut best: Option<(Vec<u8>, Vec<u8>)> = None;
        for _ in 0..GENERATION_ATTEMPTS {
            let solution = random_grid(self.size, rng);
            let puzzle = remove_givens(&solution, self.size, self.givens, rng);
            let reached_target = count_givens(&puzzle) <= self.givens;
            let improves = best
                .as_ref()
                .is_none_or(|(kept, _)| count_givens(&puzzle) < count_givens(kept));
            if improves {
                best = Some((puzzle, solution));
            }
            if reached_target {
                break;
            }
        }
        // GENERATION_ATTEMPTS > 0, so `best` is always set; an empty grid is never returned.
        best.unwrap_or_default()
    }
}

impl Task for Sudoku {
    fn name(&self) -> &str {
        self.name
    }

    fn example(&self, rng: &mut StdRng) -> Example {
        let (puzzle, solution) = self.puzzle(rng);
        Example {
            prompt: grid_to_string(&puzzle),
            response: grid_to_string(&solution),
        }
    }

    /// 1.0 when the response is a complete valid grid that keeps every given. Unique puzzles
    /// have one solution, so this is exactly "equals the solution"; it is recomputed, not stored,
    /// so an `any_solution` puzzle accepts every valid completion.
    fn score(&self, prompt: &str, response: &str) -> f64 {
        let n = self.size;
        let Some(puzzle) = parse_grid(prompt, n, 0) else {
            return 0.0;
        };
        let Some(answer) = parse_grid(strip_decoded_tail(response), n, 1) else {
            return 0.0;
        };
        let keeps_givens = puzzle
            .iter()
            .zip(&answer)
            .all(|(&given, &cell)| given == 0 || given == cell);
        if keeps_givens && is_valid_solution(&answer, n) {
            1.0
        } else {
            0.0
        }
    }

    fn response_length(&self) -> usize {
        self.size * self.size
    }

    fn prompt_length(&self) -> usize {
        self.size * self.size
    }

    fn alphabet(&self) -> &str {
        if self.size == 4 {
            "01234"
        } else {
            "0123456789"
        }
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "size": self.size,
            "givens": self.givens,
            "any_solution": self.any_solution,
        })
    }
}

/// The first solution of `puzzle` (row-major, 0 = blank, side 4 or 9), if any.
pub fn solve(puzzle: &[u8], size: usize) -> Option<Vec<u8>> {
    let mut board = Board::from_puzzle(puzzle, size)?;
    let mut first = None;
    board.count(1, &mut 0, &mut first);
    first
}

/// Solutions of `puzzle`, counting stops at `limit` (use 2 to test uniqueness). A malformed or
/// contradictory puzzle has 0.
pub fn count_solutions(puzzle: &[u8], size: usize, limit: usize) -> usize {
    let Some(mut board) = Board::from_puzzle(puzzle, size) else {
        return 0;
    };
    let mut found = 0;
    board.count(limit, &mut found, &mut None);
    found
}

/// True when `grid` is complete and every row, column and box holds 1..=size exactly once.
pub fn is_valid_solution(grid: &[u8], size: usize) -> bool {
    let Some(board) = Board::from_puzzle(grid, size) else {
        return false;
    };
    // from_puzzle rejects repeated digits, so a full board is a valid one.
    board.cells.iter().all(|&cell| cell != 0)
}

fn grid_to_string(grid: &[u8]) -> String {
    grid.iter().map(|&d| char::from(b'0' + d)).collect()
}

/// Digits `lowest..=size`, exactly `size²` of them, or None.
fn parse_grid(text: &str, size: usize, lowest: u8) -> Option<Vec<u8>> {
    if text.len() != size * size {
        return None;
    }
    text.bytes()
        .map(|b| {
            let digit = b.checked_sub(b'0')?;
            (lowest..=size as u8).contains(&digit).then_some(digit)
        })
        .collect()
}

fn count_givens(grid: &[u8]) -> usize {
    grid.iter().filter(|&&d| d != 0).count()
}

fn random_grid(size: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut board = Board::empty(size);
    // An empty board always has a completion, so the fill cannot fail.
    board.fill_randomly(rng);
    board.cells
}

fn remove_givens(solution: &[u8], size: usize, target: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut puzzle = solution.to_vec();
    let mut order: Vec<usize> = (0..puzzle.len()).collect();
    order.shuffle(rng);
    let mut givens = puzzle.len();
    for cell in order {
        if givens <= target {
            break;
        }
        let digit = puzzle[cell];
        puzzle[cell] = 0;
        if count_solutions(&puzzle, size, 2) == 1 {
            givens -= 1;
        } else {
            puzzle[cell] = digit;
        }
    }
    puzzle
}

/// A grid with bitmasks of the digits used per row, column and box (bit d = digit d).
struct Board {
    size: usize,
    box_size: usize,
    cells: Vec<u8>,
    rows: Vec<u16>,
    columns: Vec<u16>,
    boxes: Vec<u16>,
}

impl Board {
    fn empty(size: usize) -> Board {
        let box_size = if size == 4 { 2 } else { 3 };
        Board {
            size,
            box_size,
            cells: vec![0; size * size],
            rows: vec![0; size],
            columns: vec![0; size],
            boxes: vec![0; size],
        }
    }

    /// None when the size is unsupported, the length or a digit is wrong, or a digit repeats.
    fn from_puzzle(puzzle: &[u8], size: usize) -> Option<Board> {
        if !matches!(size, 4 | 9) || puzzle.len() != size * size {
            return None;
        }
        let mut board = Board::empty(size);
        for (cell, &digit) in puzzle.iter().enumerate() {
            if digit as usize > size {
                return None;
            }
            if digit != 0 {
                if board.candidates(cell) & (1 << digit) == 0 {
                    return None;
                }
                board.place(cell, digit);
            }
        }
        Some(board)
    }

    fn box_of(&self, cell: usize) -> usize {
        let (row, column) = (cell / self.size, cell % self.size);
        (row / self.box_size) * self.box_size + column / self.box_size
    }

    fn candidates(&self, cell: usize) -> u16 {
        let all = ((1u16 << self.size) - 1) << 1;
        let used = self.rows[cell / self.size]
            | self.columns[cell % self.size]
            | self.boxes[self.box_of(cell)];
        all & !used
    }

    fn place(&mut self, cell: usize, digit: u8) {
        let bit = 1 << digit;
        self.cells[cell] = digit;
        self.rows[cell / self.size] |= bit;
        self.columns[cell % self.size] |= bit;
        let b = self.box_of(cell);
        self.boxes[b] |= bit;
    }

    fn clear(&mut self, cell: usize) {
        let bit = !(1 << self.cells[cell]);
        self.cells[cell] = 0;
        self.rows[cell / self.size] &= bit;
        self.columns[cell % self.size] &= bit;
        let b = self.box_of(cell);
        self.boxes[b] &= bit;
    }

    /// The blank cell with the fewest candidates (fail-first keeps the search small), or None
    /// when the board is full.
    fn most_constrained_blank(&self) -> Option<(usize, u16)> {
        let mut best: Option<(usize, u16)> = None;
        for cell in (0..self.cells.len()).filter(|&c| self.cells[c] == 0) {
            let candidates = self.candidates(cell);
            if best.is_none_or(|(_, kept)| candidates.count_ones() < kept.count_ones()) {
                best = Some((cell, candidates));
                if candidates.count_ones() <= 1 {
                    break;
                }
            }
        }
        best
    }

    /// Depth-first count of completions up to `limit`; the first one found goes to `first`.
    fn count(&mut self, limit: usize, found: &mut usize, first: &mut Option<Vec<u8>>) {
        let Some((cell, candidates)) = self.most_constrained_blank() else {
            *found += 1;
            if first.is_none() {
                *first = Some(self.cells.clone());
            }
            return;
        };
        for digit in 1..=self.size as u8 {
            if *found >= limit {
                return;
            }
            if candidates & (1 << digit) != 0 {
                self.place(cell, digit);
                self.count(limit, found, first);
                self.clear(cell);
            }
        }
    }

    /// Completes the board trying digits in random order; false when no completion exists.
    fn fill_randomly(&mut self, rng: &mut StdRng) -> bool {
        let Some((cell, candidates)) = self.most_constrained_blank() else {
            return true;
        };
        let mut digits: Vec<u8> = (1..=self.size as u8)
            .filter(|&d| candidates & (1 << d) != 0)
            .collect();
        digits.shuffle(rng);
        for digit in digits {
            self.place(cell, digit);
            if self.fill_randomly(rng) {
                return true;
            }
            self.clear(cell);
        }
        false
    }
}
