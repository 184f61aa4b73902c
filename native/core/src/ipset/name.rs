//! Set names: what we accept, and the temp set a replace builds beside a set.

use super::constants::IPSET_MAXNAMELEN;

/// Longest name the kernel takes (its buffer holds a terminating NUL too).
pub const MAX_NAME_LEN: usize = IPSET_MAXNAMELEN - 1;
const TEMP_SUFFIX: &str = ".t";
/// Bytes of the target's name kept at the front of a hashed temp name, so a reader of
/// `ipset list` still sees whose temp it is.
const HASHED_TEMP_KEEP: usize = MAX_NAME_LEN - TEMP_SUFFIX.len() - 16;

/// Set names are ours to choose, so we accept only a conservative alphabet: nothing a shell,
/// iptables-restore or `ipset save` could read differently.
pub fn validate_set_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("set name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("set name is {} bytes; the limit is {MAX_NAME_LEN}", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' || b == b':') {
        return Err("set name may hold only A-Z a-z 0-9 _ - . :".into());
    }
    if name.starts_with('-') {
        return Err("set name may not start with '-'".into());
    }
    Ok(())
}

/// The temp set a replace of `name` fills before swapping it in. Derived from the name alone, so
/// the set's owner can recognise it (and a sync of `name` can remove a stale one a crash left):
/// `<name>.t` when that fits, else the name's first bytes, `.t` and a 64-bit FNV-1a hash of the
/// whole name. Nothing else of anyone's is ever taken for a temp set.
pub fn temp_set_name(name: &str) -> String {
    if name.len() + TEMP_SUFFIX.len() <= MAX_NAME_LEN {
        return format!("{name}{TEMP_SUFFIX}");
    }
    // FNV-1a: stable across runs and versions, unlike std's randomised hasher. Names are ASCII
    // (validated), so cutting at a byte index is cutting at a character.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}{TEMP_SUFFIX}{h:016x}", &name[..HASHED_TEMP_KEEP.min(name.len())])
}

/// Whether `name` has the shape of a temp set (of some set): such names are refused for sets of
/// their own, so that a temp set can never be someone's real set.
pub fn is_temp_shaped(name: &str) -> bool {
    if name.ends_with(TEMP_SUFFIX) {
        return true;
    }
    let b = name.as_bytes();
    b.len() == MAX_NAME_LEN
        && &name[HASHED_TEMP_KEEP..HASHED_TEMP_KEEP + TEMP_SUFFIX.len()] == TEMP_SUFFIX
        && b[HASHED_TEMP_KEEP + TEMP_SUFFIX.len()..].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names() {
        assert!(validate_set_name("sg-abc_1.v4").is_ok());
        assert!(validate_set_name(&"a".repeat(31)).is_ok());
        assert!(validate_set_name(&"a".repeat(32)).is_err());
        for bad in ["", "a b", "a;b", "a\nb", "-x", "ü", "a'b"] {
            assert!(validate_set_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn temp_names_are_derived_valid_and_recognisable() {
        // The engine's names (sg4- + 16 hex) get the readable form.
        assert_eq!(temp_set_name("sg4-0123456789abcdef"), "sg4-0123456789abcdef.t");
        assert_eq!(temp_set_name(&"a".repeat(29)), format!("{}.t", "a".repeat(29)));
        let long = "x".repeat(30);
        let t = temp_set_name(&long);
        assert_eq!(t.len(), MAX_NAME_LEN);
        assert!(t.starts_with("xxxxxxxxxxxxx.t"), "{t}");
        assert_ne!(t, temp_set_name(&"x".repeat(31)), "distinct names, distinct temps");
        assert_eq!(t, temp_set_name(&long), "stable");
        for n in ["a", "sg4-0123456789abcdef", &long, &"y".repeat(31)] {
            let t = temp_set_name(n);
            assert!(validate_set_name(&t).is_ok(), "{t}");
            assert!(is_temp_shaped(&t), "{t}");
        }
        for n in ["a", "sg4-0123456789abcdef", "a.tx", &long] {
            assert!(!is_temp_shaped(n), "{n}");
        }
    }
}
