//! The canonical encoder's property test (SEMANTICS.md scenario 17, issue 12): generated pairs
//! of values of every serde shape (structs with optional and skipped fields, enums with unit,
//! newtype, tuple, struct and skipped variants, untagged and internally and adjacently tagged
//! enums, flattened structs and maps, maps, sets, nested options, unit and `None`, integers of
//! two widths, floats) encode alike exactly when they are equal, and in any insertion order.
//! The generator is shared with the `canonical_injectivity` fuzz target.

mod canonical_model;

use canonical_model::check_pair;
use proptest::prelude::*;

proptest! {
    // 10 000 cases, two pairs each (a near miss and an independent value).
    #![proptest_config(ProptestConfig::with_cases(10_000))]
    #[test]
    fn scenario_17_canonical_encoding_is_injective_and_order_free(
        a in proptest::collection::vec(any::<u8>(), 0..48),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..3),
        swap in (any::<usize>(), any::<usize>()),
        other in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        // Near misses: the same choices with one or two changed, or two swapped (a value moved
        // from one field, entry or variant to another).
        let mut near = a.clone();
        let mut swapped = a.clone();
        if !a.is_empty() {
            let n = a.len();
            for (i, v) in edits {
                near[i % n] = v;
            }
            swapped.swap(swap.0 % n, swap.1 % n);
        }
        check_pair(&a, &near);
        check_pair(&a, &swapped);
        check_pair(&a, &other);
    }
}

/// The property is not vacuous: over every one-byte change of a few inputs, many pairs encode,
/// some are equal values (with different bytes: other widths, `-0.0`, NaN payloads, skipped
/// fields, other orders) and most are not.
#[test]
fn scenario_17_near_misses_cover_equal_and_distinct_values() {
    let seeds: [&[u8]; 5] = [
        // A flattened struct whose flattened map repeats its field `id`: swapping the two
        // values must change the encoding (a sort by whole entry would merge them).
        &[1, 2, 7, 1, 1, 5, 1, 0, 0, 1, 0, 2, 0],
        &[1, 2, 0, 3, 1, 0, 2, 5, 4, 1, 3],
        &[3, 1, 1, 2, 3, 0, 6, 2, 1, 2, 0, 1, 1, 3, 2, 2],
        &[0, 0, 0, 0, 3, 2, 2, 7, 1, 2, 5, 9, 3, 3, 1, 0, 2, 4],
        &[2, 3, 1, 1, 3, 5, 2, 1, 0, 3, 1, 6, 1, 2, 2, 9, 1, 1, 0, 2],
    ];
    let (mut compared, mut equal) = (0_u32, 0_u32);
    for seed in seeds {
        for i in 0..seed.len() {
            for j in i + 1..seed.len() {
                let mut swapped = seed.to_vec();
                swapped.swap(i, j);
                check_pair(seed, &swapped);
            }
            for v in 0..=12_u8 {
                let mut near = seed.to_vec();
                near[i] = v;
                if check_pair(seed, &near) {
                    compared += 1;
                    if canonical_model::Model::from_bytes(seed)
                        == canonical_model::Model::from_bytes(&near)
                    {
                        equal += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 500, "{compared} pairs compared");
    assert!(
        equal > 50 && equal < compared / 2,
        "{equal} of {compared} equal"
    );
}

/// The seed above is what it says: a flattened `id` field and a flattened map entry `"id"`.
#[test]
fn scenario_17_flattened_duplicate_names_keep_their_order() {
    let seed = [1, 2, 7, 1, 1, 5, 1, 0, 0, 1, 0, 2, 0];
    let mut swapped = seed;
    swapped.swap(6, 11);
    let (a, b) = (
        canonical_model::Model::from_bytes(&seed),
        canonical_model::Model::from_bytes(&swapped),
    );
    let shown = format!("{a:?} / {b:?}");
    assert!(
        shown.contains("Flat { id: 1") && shown.contains("Flat { id: 2"),
        "{shown}"
    );
    assert!(
        shown.contains("(\"id\", 2)") && shown.contains("(\"id\", 1)"),
        "{shown}"
    );
    assert!(check_pair(&seed, &swapped));
}
