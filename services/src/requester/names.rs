//! Names for new beasts in the original's shape, `colour_Name_animal`
//! (e.g. `red_John_lion`), drawn from the lab's own word lists.

use rand::seq::IndexedRandom;

const COLOURS: &[&str] = &[
    "amber",
    "aqua",
    "azure",
    "beige",
    "black",
    "blue",
    "bronze",
    "brown",
    "coral",
    "crimson",
    "cyan",
    "emerald",
    "fuchsia",
    "gold",
    "gray",
    "green",
    "indigo",
    "ivory",
    "jade",
    "khaki",
    "lavender",
    "lime",
    "magenta",
    "maroon",
    "mauve",
    "navy",
    "ochre",
    "olive",
    "orange",
    "peach",
    "pink",
    "plum",
    "purple",
    "red",
    "rose",
    "ruby",
    "rust",
    "saffron",
    "salmon",
    "sapphire",
    "scarlet",
    "sepia",
    "silver",
    "tan",
    "teal",
    "turquoise",
    "violet",
    "white",
    "yellow",
];

const GIVEN_NAMES: &[&str] = &[
    "Ada", "Agnes", "Alan", "Alice", "Amara", "Anton", "Aria", "Arjun", "Astrid", "Bea", "Bernard",
    "Bjorn", "Carmen", "Cecil", "Chen", "Clara", "Dara", "Dmitri", "Edith", "Elif", "Emil", "Esme",
    "Farah", "Felix", "Freya", "Gideon", "Greta", "Hana", "Hugo", "Ines", "Ingrid", "Ivan",
    "Jonas", "Joan", "John", "Kai", "Kenji", "Lars", "Leila", "Lena", "Luca", "Mabel", "Mara",
    "Marta", "Milo", "Mina", "Nadia", "Nils", "Noor", "Olga", "Omar", "Otto", "Petra", "Priya",
    "Quinn", "Rafael", "Rosa", "Rui", "Sana", "Selma", "Soren", "Talia", "Theo", "Tomas", "Uma",
    "Ursula", "Vera", "Viktor", "Wanda", "Wren", "Xena", "Yara", "Yusuf", "Zadie", "Zora",
];

const ANIMALS: &[&str] = &[
    "badger", "bat", "bear", "beaver", "bison", "boar", "camel", "cat", "cheetah", "cobra", "crab",
    "crane", "crow", "deer", "dingo", "dolphin", "eagle", "eel", "elk", "falcon", "ferret",
    "finch", "fox", "frog", "gazelle", "gecko", "goat", "goose", "hare", "hawk", "hedgehog",
    "heron", "hippo", "horse", "hyena", "ibis", "jackal", "jaguar", "koala", "lemur", "leopard",
    "lion", "llama", "lynx", "marten", "mole", "moose", "newt", "ocelot", "octopus", "orca",
    "otter", "owl", "panda", "panther", "parrot", "pelican", "penguin", "puma", "quail", "rabbit",
    "raven", "seal", "shark", "sloth", "snail", "sparrow", "squid", "stoat", "swan", "tapir",
    "tiger", "toad", "trout", "turtle", "viper", "vole", "walrus", "weasel", "whale", "wolf",
    "wombat", "yak", "zebra",
];

/// How many names [`random_name`] can draw: the chance a new name is
/// already in a table is the table's rows over this.
pub const NAME_SPACE: usize = COLOURS.len() * GIVEN_NAMES.len() * ANIMALS.len();

/// A fresh name, at most 50 characters (the column's limit). With 49 × 75 ×
/// 84 combinations a name repeats now and then; the unique constraint then
/// answers 23505, as it would in the original.
pub fn random_name(rng: &mut impl rand::Rng) -> String {
    let colour = COLOURS.choose(rng).expect("non-empty list");
    let given = GIVEN_NAMES.choose(rng).expect("non-empty list");
    let animal = ANIMALS.choose(rng).expect("non-empty list");
    format!("{colour}_{given}_{animal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_the_originals_shape_and_fit_the_column() {
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let name = random_name(&mut rng);
            let parts: Vec<&str> = name.split('_').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert!(parts[0].chars().all(|c| c.is_ascii_lowercase()));
            assert!(parts[1].chars().next().unwrap().is_ascii_uppercase());
            assert!(name.len() <= 50);
        }
    }
}
