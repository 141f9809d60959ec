//! Checkable tasks: generators are valid, unique and deterministic; scorers are exact.

use std::collections::HashSet;
use std::path::PathBuf;

use flowlm::random::rng_for;
use flowlm::tasks::{
    Addition, Counting, Example, Sorting, Sudoku, Task, TaskKind, TaskParameters, generate_split,
    task_by_name, task_for_data, write_split,
};

fn digits_of(text: &str) -> Vec<u8> {
    text.bytes().map(|b| b - b'0').collect()
}

/// Independent of the module's solver on purpose: plain first-blank backtracking that scans
/// row, column and box for every candidate, counting solutions up to `limit`.
fn reference_count(grid: &mut [u8], size: usize, limit: usize) -> usize {
    let box_size = if size == 4 { 2 } else { 3 };
    let Some(cell) = grid.iter().position(|&d| d == 0) else {
        return 1;
    };
    let (row, column) = (cell / size, cell % size);
    let fits = |grid: &[u8], digit: u8| {
        (0..size).all(|i| grid[row * size + i] != digit && grid[i * size + column] != digit) && {
            let (top, left) = (row - row % box_size, column - column % box_size);
            (0..box_size).all(|r| (0..box_size).all(|c| grid[(top + r) * size + left + c] != digit))
        }
    };
    let mut found = 0;
    for digit in 1..=size as u8 {
        if found >= limit {
            break;
        }
        if fits(grid, digit) {
            grid[cell] = digit;
            found += reference_count(grid, size, limit - found);
            grid[cell] = 0;
        }
    }
    found
}

/// Independent validity check: every row, column and box is a permutation of 1..=size.
fn reference_valid(grid: &[u8], size: usize) -> bool {
    let box_size = if size == 4 { 2 } else { 3 };
    let full: HashSet<u8> = (1..=size as u8).collect();
    let group_ok =
        |cells: Vec<usize>| cells.iter().map(|&c| grid[c]).collect::<HashSet<_>>() == full;
    grid.len() == size * size
        && (0..size).all(|r| group_ok((0..size).map(|c| r * size + c).collect()))
        && (0..size).all(|c| group_ok((0..size).map(|r| r * size + c).collect()))
        && (0..size).all(|b| {
            let (top, left) = ((b / box_size) * box_size, (b % box_size) * box_size);
            group_ok(
                (0..size)
                    .map(|i| (top + i / box_size) * size + left + i % box_size)
                    .collect(),
            )
        })
}

fn check_sudoku(task: &Sudoku, seeds: std::ops::Range<u64>) {
    let size = task.size();
    for seed in seeds {
        let example = task.example(&mut rng_for(seed, 0));
        let puzzle = digits_of(&example.prompt);
        let solution = digits_of(&example.response);
        assert!(
            reference_valid(&solution, size),
            "seed {seed}: invalid solution"
        );
        for (cell, (&given, &answer)) in puzzle.iter().zip(&solution).enumerate() {
            assert!(
                given == 0 || given == answer,
                "seed {seed}: given {cell} differs"
            );
        }
        let mut grid = puzzle.clone();
        assert_eq!(
            reference_count(&mut grid, size, 2),
            1,
            "seed {seed}: not unique"
        );
        let givens = puzzle.iter().filter(|&&d| d != 0).count();
        assert_eq!(givens, task.givens(), "seed {seed}: givens");
        assert_eq!(task.score(&example.prompt, &example.response), 1.0);
    }
}

#[test]
fn sudoku4_puzzles_are_unique_with_requested_givens() {
    check_sudoku(&Sudoku::new(4, None, false).unwrap(), 0..20);
    check_sudoku(&Sudoku::new(4, Some(4), false).unwrap(), 0..20);
    check_sudoku(&Sudoku::new(4, Some(10), false).unwrap(), 0..5);
}

#[test]
fn any_solution_sudoku_keeps_its_givens_and_scores_every_valid_completion() {
    let task = Sudoku::new(4, Some(3), true).unwrap();
    let mut several = 0;
    for seed in 0..20 {
        let example = task.example(&mut rng_for(seed, 0));
        let puzzle: Vec<u8> = example.prompt.bytes().map(|b| b - b'0').collect();
        let solution: Vec<u8> = example.response.bytes().map(|b| b - b'0').collect();
        assert_eq!(puzzle.iter().filter(|&&d| d != 0).count(), 3, "seed {seed}");
        assert!(
            puzzle
                .iter()
                .zip(&solution)
                .all(|(&p, &s)| p == 0 || p == s),
            "seed {seed}: the stored solution keeps the givens"
        );
        assert_eq!(task.score(&example.prompt, &example.response), 1.0);
        // Relabelling a digit the puzzle does not show gives another valid completion.
        let shown: Vec<u8> = puzzle.iter().copied().filter(|&d| d != 0).collect();
        let free: Vec<u8> = (1..=4).filter(|d| !shown.contains(d)).collect();
        if let [a, b, ..] = free[..] {
            let other: String = solution
                .iter()
                .map(|&d| match d {
                    d if d == a => b,
                    d if d == b => a,
                    d => d,
                })
                .map(|d| char::from(b'0' + d))
                .collect();
            assert_ne!(other, example.response);
            assert_eq!(task.score(&example.prompt, &other), 1.0, "seed {seed}");
            several += 1;
        }
        let mut broken = example.response.clone().into_bytes();
        broken.swap(0, 1);
        assert_eq!(
            task.score(&example.prompt, std::str::from_utf8(&broken).unwrap()),
            0.0,
            "seed {seed}: two cells of a row swapped break the columns"
        );
    }
    assert!(
        several >= 10,
        "only {several} puzzles leave two digits unshown"
    );
}

#[test]
fn sudoku9_puzzles_are_unique_with_requested_givens() {
    check_sudoku(&Sudoku::new(9, None, false).unwrap(), 0..3);
}

#[test]
fn unreachable_givens_keep_the_fewest_unique_puzzle() {
    // 17 givens is the 9x9 minimum and greedy removal stops around 22-24: the generator keeps
    // its best unique puzzle, never one below the request.
    let task = Sudoku::new(9, Some(17), false).unwrap();
    for seed in 0..2 {
        let example = task.example(&mut rng_for(seed, 0));
        let mut puzzle = digits_of(&example.prompt);
        let givens = puzzle.iter().filter(|&&d| d != 0).count();
        assert!((17..=30).contains(&givens), "{givens} givens");
        assert_eq!(reference_count(&mut puzzle, 9, 2), 1);
        assert_eq!(
            puzzle,
            digits_of(&example.prompt),
            "reference solver restores the grid"
        );
    }
}

#[test]
fn reference_counter_counts_all_4x4_grids() {
    // There are exactly 288 4x4 Sudoku grids; this guards the test's own solver.
    assert_eq!(reference_count(&mut [0; 16], 4, 1000), 288);
}

#[test]
fn module_solver_agrees_with_reference() {
    let task = Sudoku::new(9, None, false).unwrap();
    let example = task.example(&mut rng_for(7, 0));
    let puzzle = digits_of(&example.prompt);
    let solved = flowlm::tasks::sudoku::solve(&puzzle, 9).unwrap();
    assert_eq!(solved, digits_of(&example.response));
    assert_eq!(flowlm::tasks::sudoku::count_solutions(&puzzle, 9, 2), 1);
    let empty = vec![0; 16];
    assert_eq!(flowlm::tasks::sudoku::count_solutions(&empty, 4, 1000), 288);
}

#[test]
fn sudoku_scorer_rejects_near_misses() {
    let task = Sudoku::new(4, None, false).unwrap();
    let Example { prompt, response } = task.example(&mut rng_for(3, 0));
    let blanks: Vec<usize> = prompt
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'0')
        .map(|(i, _)| i)
        .collect();
    let set = |cell: usize, digit: u8| {
        let mut bytes = response.clone().into_bytes();
        bytes[cell] = digit;
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(task.score(&prompt, &response), 1.0);
    assert_eq!(task.score(&prompt, &format!("{response}<end><pad>\n")), 1.0);

    let cell = blanks[0];
    let wrong = if response.as_bytes()[cell] == b'1' {
        b'2'
    } else {
        b'1'
    };
    assert_eq!(
        task.score(&prompt, &set(cell, wrong)),
        0.0,
        "one wrong cell"
    );
    // Swap two blanks in the same row holding different digits: the row stays a permutation,
    // but columns (and boxes) break.
    let (a, b) = blanks
        .iter()
        .flat_map(|&a| blanks.iter().map(move |&b| (a, b)))
        .find(|&(a, b)| a / 4 == b / 4 && response.as_bytes()[a] != response.as_bytes()[b])
        .expect("a row with two blanks");
    let swapped = set(a, response.as_bytes()[b]);
    let swapped = {
        let mut bytes = swapped.into_bytes();
        bytes[b] = response.as_bytes()[a];
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(task.score(&prompt, &swapped), 0.0, "swapped cells");
    assert_eq!(task.score(&prompt, &response[..15]), 0.0, "too short");
    assert_eq!(
        task.score(&prompt, &format!("{response}1")),
        0.0,
        "extra digit"
    );
    assert_eq!(
        task.score(&prompt, &format!("{response}x")),
        0.0,
        "trailing junk"
    );
    assert_eq!(
        task.score(&prompt, &format!(" {response}")),
        0.0,
        "leading space"
    );
    assert_eq!(task.score(&prompt, &set(cell, b'0')), 0.0, "blank left");
    assert_eq!(task.score("not a puzzle", &response), 0.0);

    // A valid grid that ignores the givens is wrong even though it is a Sudoku.
    let other = task.example(&mut rng_for(4, 0)).response;
    if other != response {
        assert_eq!(task.score(&prompt, &other), 0.0);
    }
}

#[test]
fn addition_scorer_recomputes_the_sum() {
    let task = Addition::new(3).unwrap();
    assert_eq!(task.score("500+079=", "0579"), 1.0);
    assert_eq!(task.score("999+999=", "1998"), 1.0);
    assert_eq!(task.score("500+079=", "0579 <end>"), 1.0);
    assert_eq!(task.score("500+079=", "0578"), 0.0, "off by one");
    assert_eq!(task.score("500+079=", "0580"), 0.0, "off by one");
    assert_eq!(task.score("500+079=", "579"), 0.0, "unpadded");
    assert_eq!(task.score("500+079=", "05790"), 0.0, "extra digit");
    assert_eq!(task.score("500+079", "0579"), 0.0, "malformed prompt");
    assert_eq!(task.score("5a0+079=", "0579"), 0.0, "malformed prompt");
    for seed in 0..50 {
        let example = task.example(&mut rng_for(seed, 0));
        assert_eq!(task.score(&example.prompt, &example.response), 1.0);
    }
}

#[test]
fn sorting_scorer_recomputes_the_order() {
    let task = Sorting::new(5, 99).unwrap();
    assert_eq!(task.score("42,07,19,88,03=", "03,07,19,42,88"), 1.0);
    assert_eq!(
        task.score("42,07,19,88,03=", "03,07,19,42,88<pad><pad>"),
        1.0
    );
    assert_eq!(
        task.score("42,07,19,88,03=", "03,19,07,42,88"),
        0.0,
        "swapped"
    );
    assert_eq!(
        task.score("42,07,19,88,03=", "03,07,19,42"),
        0.0,
        "missing item"
    );
    assert_eq!(
        task.score("42,07,19,88,03=", "03,07,19,42,88,88"),
        0.0,
        "extra item"
    );
    assert_eq!(
        task.score("42,07,19,88,03=", "3,7,19,42,88"),
        0.0,
        "unpadded"
    );
    assert_eq!(
        task.score("42,07,,88,03=", "03,07,42,88"),
        0.0,
        "malformed prompt"
    );
    for seed in 0..50 {
        let example = task.example(&mut rng_for(seed, 0));
        assert_eq!(task.score(&example.prompt, &example.response), 1.0);
    }
}

#[test]
fn counting_scorer_recounts_from_the_prompt() {
    let task = Counting::new(3, 5).unwrap();
    assert_eq!(task.score("00372=", "00373,00374,00375"), 1.0);
    assert_eq!(task.score("00372=", "00373,00374,00375<end><end>"), 1.0);
    assert_eq!(task.score("09998=", "09999,10000,10001"), 1.0, "carry");
    assert_eq!(task.score("00372=", "00373,00374,00376"), 0.0, "skipped");
    assert_eq!(task.score("00372=", "00373,00374"), 0.0, "missing number");
    assert_eq!(
        task.score("00372=", "00373,00374,00375,00376"),
        0.0,
        "extra number"
    );
    assert_eq!(task.score("00372=", "373,374,375"), 0.0, "unpadded");
    assert_eq!(task.score("372=", "00373,00374,00375"), 0.0, "short prompt");
    assert_eq!(
        task.score("99998=", "99999,100000,100001"),
        0.0,
        "past the width"
    );
    for seed in 0..50 {
        let example = task.example(&mut rng_for(seed, 0));
        assert_eq!(task.score(&example.prompt, &example.response), 1.0);
    }
}

fn all_tasks() -> Vec<Box<dyn Task>> {
    TaskKind::ALL
        .iter()
        .map(|kind| kind.build(&TaskParameters::default()).unwrap())
        .collect()
}

#[test]
fn examples_are_deterministic_per_seed() {
    for task in all_tasks() {
        let draw = |seed| {
            let mut rng = rng_for(seed, 0);
            (0..3).map(|_| task.example(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1), "{}", task.name());
        assert_ne!(draw(1), draw(2), "{}", task.name());
    }
}

#[test]
fn lengths_are_fixed_and_characters_in_alphabet() {
    for task in all_tasks() {
        let draws = if task.name() == "sudoku9" { 5 } else { 200 };
        let mut rng = rng_for(11, 0);
        for _ in 0..draws {
            let Example { prompt, response } = task.example(&mut rng);
            assert_eq!(
                prompt.len(),
                task.prompt_length(),
                "{} {prompt}",
                task.name()
            );
            assert_eq!(
                response.len(),
                task.response_length(),
                "{} {response}",
                task.name()
            );
            for c in prompt.chars().chain(response.chars()) {
                assert!(task.alphabet().contains(c), "{}: {c:?}", task.name());
            }
        }
    }
}

#[test]
fn split_has_no_overlap_and_is_reproducible() {
    let task = task_by_name("addition", &TaskParameters::default()).unwrap();
    let (train, test) = generate_split(task.as_ref(), 500, 100, 5).unwrap();
    assert_eq!((train.len(), test.len()), (500, 100));
    let train_prompts: HashSet<&str> = train.iter().map(|e| e.prompt.as_str()).collect();
    let test_prompts: HashSet<&str> = test.iter().map(|e| e.prompt.as_str()).collect();
    assert_eq!(train_prompts.len(), 500);
    assert_eq!(test_prompts.len(), 100);
    assert!(train_prompts.is_disjoint(&test_prompts));
    assert_eq!(
        generate_split(task.as_ref(), 500, 100, 5).unwrap(),
        (train, test)
    );
}

#[test]
fn too_small_a_task_space_is_an_error() {
    let parameters = TaskParameters {
        digits: 1,
        ..TaskParameters::default()
    };
    let task = task_by_name("addition", &parameters).unwrap();
    // 1-digit addition has only 100 distinct prompts.
    assert!(generate_split(task.as_ref(), 90, 20, 0).is_err());
}

#[test]
fn write_split_writes_jsonl_and_manifest() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("flowlm-tasks-test-{}", std::process::id()));
    let task = task_by_name("sorting", &TaskParameters::default()).unwrap();
    let manifest = write_split(task.as_ref(), 20, 5, 9, &dir).unwrap();
    assert_eq!(manifest.task, "sorting");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    for (name, rows) in [("train.jsonl", 20), ("test.jsonl", 5)] {
        let text = read(name);
        assert_eq!(text.lines().count(), rows);
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let object = value.as_object().unwrap();
            assert_eq!(object.len(), 2);
            let example: Example = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(task.score(&example.prompt, &example.response), 1.0);
        }
    }
    let described: serde_json::Value = serde_json::from_str(&read("task.json")).unwrap();
    assert_eq!(described["task"], "sorting");
    assert_eq!(described["parameters"]["count"], 5);
    assert_eq!(described["seed"], 9);
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_and_parameters_are_validated() {
    let error = task_by_name("chess", &TaskParameters::default())
        .err()
        .unwrap()
        .to_string();
    for name in ["sudoku4", "sudoku9", "addition", "sorting", "counting"] {
        assert!(error.contains(name), "{error}");
        assert_eq!(
            task_by_name(name, &TaskParameters::default())
                .unwrap()
                .name(),
            name
        );
    }
    assert!(Sudoku::new(4, Some(0), false).is_err());
    assert!(Sudoku::new(4, Some(17), false).is_err());
    assert!(Sudoku::new(6, None, false).is_err());
    assert!(Addition::new(0).is_err());
    assert!(Addition::new(19).is_err());
    assert!(Sorting::new(0, 99).is_err());
    assert!(Counting::new(0, 5).is_err());
    assert!(Counting::new(5, 0).is_err());
    assert!(Counting::new(10, 1).is_err());
    let parameters: TaskParameters = serde_json::from_str(r#"{"digits": 4}"#).unwrap();
    assert_eq!((parameters.digits, parameters.count), (4, 5));
}

/// `eval budget` and `train-policy` build the task from the data's task.json: 5-digit addition
/// data is scored as 5-digit addition (with the defaults its answers would all score 0), sudoku
/// keeps its givens, a manifest for another task is refused, and no manifest means defaults.
#[test]
fn tasks_read_their_parameters_from_the_datas_manifest() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("flowlm-tasks-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let addition = dir.join("addition");
    let five_digits = TaskParameters {
        digits: 5,
        ..Default::default()
    };
    let made = task_by_name("addition", &five_digits).unwrap();
    write_split(made.as_ref(), 10, 4, 3, &addition).unwrap();
    let read = task_for_data("addition", &addition.join("test.jsonl")).unwrap();
    assert_eq!(read.parameters(), made.parameters());
    let first: Example = serde_json::from_str(
        std::fs::read_to_string(addition.join("test.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(read.score(&first.prompt, &first.response), 1.0);

    let sudoku = dir.join("sudoku");
    let made = task_by_name(
        "sudoku4",
        &TaskParameters {
            givens: Some(8),
            any_solution: true,
            ..Default::default()
        },
    )
    .unwrap();
    write_split(made.as_ref(), 5, 2, 3, &sudoku).unwrap();
    let read = task_for_data("sudoku4", &sudoku.join("train.jsonl")).unwrap();
    assert_eq!(read.parameters(), made.parameters());

    let error = task_for_data("sorting", &addition.join("test.jsonl"))
        .err()
        .expect("a manifest for another task is an error");
    assert!(error.to_string().contains("addition"), "{error}");

    let bare = dir.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let read = task_for_data("addition", &bare.join("rows.jsonl")).unwrap();
    assert_eq!(
        read.parameters(),
        task_by_name("addition", &TaskParameters::default())
            .unwrap()
            .parameters()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
