//! The services' one source of randomness. It starts from fresh entropy;
//! once the lab sets a seed (`MYTHICAL_SEED`, or `PUT /admin/seed` when a
//! scenario starts with one) every draw — which beast, which method, which
//! name, whether a fault hits — follows that seed, so a run can be
//! repeated.

use std::sync::{Mutex, OnceLock};

use rand::SeedableRng;
use rand::rngs::StdRng;

fn source() -> &'static Mutex<(Option<u64>, StdRng)> {
    static SOURCE: OnceLock<Mutex<(Option<u64>, StdRng)>> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let seeded = std::env::var("MYTHICAL_SEED")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let rng = match seeded {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Mutex::new((seeded, rng))
    })
}

/// Restarts the sequence from `seed`.
pub fn reseed(seed: u64) {
    *source().lock().unwrap() = (Some(seed), StdRng::seed_from_u64(seed));
}

/// Back to fresh entropy.
pub fn unseed() {
    *source().lock().unwrap() = (None, StdRng::from_rng(&mut rand::rng()));
}

/// The seed in force, if any.
pub fn seed() -> Option<u64> {
    source().lock().unwrap().0
}

/// One draw (or a few) from the shared sequence.
pub fn with<T>(draw: impl FnOnce(&mut StdRng) -> T) -> T {
    draw(&mut source().lock().unwrap().1)
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    #[test]
    fn a_seed_repeats_the_sequence() {
        super::reseed(42);
        let first: Vec<u32> = (0..8).map(|_| super::with(|r| r.random())).collect();
        assert_eq!(super::seed(), Some(42));
        super::reseed(42);
        let again: Vec<u32> = (0..8).map(|_| super::with(|r| r.random())).collect();
        assert_eq!(first, again);
        super::unseed();
        assert_eq!(super::seed(), None);
    }
}
