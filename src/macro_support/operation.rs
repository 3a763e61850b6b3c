//! The operation identity of one `#[idempotent]` function, read from the compiler, and the
//! registry of definition sites.

use std::borrow::Cow;

use idempotency_core::{Error, KeyEncoder};

/// The operation identity of one `#[idempotent]` function, read from the compiler.
///
/// The macro cannot see the `impl` block or the generic arguments of a call, so the generated
/// code asks the compiler at run time (these strings are constants of each instantiation):
///
/// - `item` is `std::any::type_name_of_val` of a `fn` item nested in the function:
///   `app::Users::get::__idempotency_fn`, `<app::Users as app::Tr>::get::__idempotency_fn`,
///   `app::W<_>::get::__idempotency_fn`, `app::m::free::__idempotency_fn`. Without its suffix
///   it is the function's path, the default operation name. A nested item has no generics, so
///   the name is the same for every instantiation.
/// - `closure` is the same for a closure in the function. A closure carries every generic
///   argument of its function, its `impl` and its trait, so it reads
///   `app::W<u32>::get::{{closure}}`, `app::echo<u64>::{{closure}}`,
///   `<app::Users as app::Tr>::get::{{closure}}` for a trait's default method.
///
/// Where the two differ the function is one instantiation among several, and the difference
/// enters the key's identity through [`KeyEncoder::instance`].
#[derive(Clone, Debug)]
pub struct Operation {
    /// The function's path: `item` without the nested item's segment and the `{{closure}}`
    /// segments of an `async` body.
    path: &'static str,
    /// The visible operation name when `path` is longer than an operation name may be.
    short: Option<String>,
    /// What identifies the instantiation: the generic arguments (`<u64>`) when the path
    /// carries none of its own, else the whole instantiated path; `None` when not generic.
    instance: Option<&'static str>,
}

/// The suffix `#[idempotent]`'s nested item adds to the function's path.
const ITEM_SUFFIX: &str = "::__idempotency_fn";

impl Operation {
    /// The identity at `site` for the two type names described on [`Operation`]: the one
    /// `site` keeps when they are the two its first call read (the same instantiation: a
    /// `&'static str` at the same address with the same length has the same text), else read
    /// anew ([`Operation::new`]). Reading it costs a few string comparisons per call, which a
    /// replay from memory would feel (issue 17); for a generic function only the first
    /// instantiation to run is kept, and the others read theirs on every call.
    #[inline]
    pub fn at(
        site: &'static Site,
        item: &'static str,
        closure: &'static str,
    ) -> Cow<'static, Operation> {
        match site.first.get() {
            Some(first) if first.is(item, closure) => Cow::Borrowed(&first.operation),
            _ => Operation::read_at(site, item, closure),
        }
    }

    /// [`Operation::at`] when `site` does not keep this identity (yet).
    #[inline(never)]
    fn read_at(
        site: &'static Site,
        item: &'static str,
        closure: &'static str,
    ) -> Cow<'static, Operation> {
        let operation = Operation::new(item, closure);
        let first = site.first.get_or_init(|| First {
            item,
            closure,
            operation: operation.clone(),
        });
        if first.is(item, closure) {
            Cow::Borrowed(&first.operation)
        } else {
            Cow::Owned(operation)
        }
    }

    /// Reads the identity from the two type names described on [`Operation`].
    pub fn new(item: &'static str, closure: &'static str) -> Operation {
        let path = strip_closures(item.strip_suffix(ITEM_SUFFIX).unwrap_or(item));
        let here = strip_closures(closure);
        let instance = if here == path {
            None
        } else {
            // A free function (or a method of a non-generic type) shows its generic
            // arguments after its own path: keep only them, so that moving the function with
            // a pinned `name` keeps its keys. Otherwise (`app::W<u32>::get`, a trait's default
            // method) the instantiation is spread over the path: keep all of it. Within one
            // function every instantiation takes the same branch.
            Some(here.strip_prefix(path).unwrap_or(here))
        };
        let short = (path.len() > idempotency_core::MAX_OPERATION_BYTES).then(|| shorten(path));
        Operation {
            path,
            short,
            instance,
        }
    }

    /// The default operation name: the function's path, or, when that is longer than
    /// `MAX_OPERATION_BYTES`, its start, `~`, and 16 hex characters of a hash of the whole path.
    pub fn name(&self) -> &str {
        self.short.as_deref().unwrap_or(self.path)
    }

    /// Adds the instantiation to the key's identity, and, when the default name was shortened,
    /// the whole path (so two long paths with one shortened name never share a key).
    #[inline]
    pub fn identify(&self, enc: &mut KeyEncoder<'_>, default_name: bool) {
        if default_name && self.short.is_some() {
            enc.instance(self.path);
        }
        if let Some(instance) = self.instance {
            enc.instance(instance);
        }
    }

    /// Checks that this compiler's `type_name` shows the generic arguments of closures, which
    /// [`Operation::new`] relies on to tell instantiations apart. `std::any::type_name` does not
    /// promise its format; should a compiler stop showing them, every `#[idempotent]` call fails
    /// with this error instead of letting two instantiations share records.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the compiler does not show them.
    #[inline]
    pub fn check(&self) -> Result<(), Error> {
        static SHOWS_GENERICS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *SHOWS_GENERICS.get_or_init(probe::shows_generics) {
            Ok(())
        } else {
            Err(Error::InvalidKey {
                reason: "this compiler's `std::any::type_name` does not show the generic arguments of a closure, so `#[idempotent]` cannot tell the instantiations of a generic function apart; build with a compiler that does (every stable Rust since 1.76 does)",
            })
        }
    }
}

/// Where one `#[idempotent]` function is defined: a `static` each expansion declares, whose
/// address tells expansions apart (a `static` with interior mutability has its own address).
/// Functions of one name in two blocks or closures of one function have the same path as
/// `type_name` prints it (`app::outer::lookup`), so the same default operation name; the first
/// call of each site registers its path, and a second site with the same path is refused
/// ([`Operation::check_site`]) rather than sharing records.
#[allow(missing_debug_implementations)]
pub struct Site {
    /// The outcome of this site's registration, once made.
    registered: std::sync::OnceLock<bool>,
    /// The identity read by this site's first call, with the type names it was read from.
    first: std::sync::OnceLock<First>,
}

/// An [`Operation`] a [`Site`] keeps, and the two type names it was read from.
struct First {
    item: &'static str,
    closure: &'static str,
    operation: Operation,
}

impl First {
    /// Whether `item` and `closure` are the two type names this was read from: the same
    /// address and length, so the same text.
    #[inline]
    fn is(&self, item: &'static str, closure: &'static str) -> bool {
        std::ptr::eq(self.item, item) && std::ptr::eq(self.closure, closure)
    }
}

impl Site {
    /// A site not registered yet.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Site {
        Site {
            registered: std::sync::OnceLock::new(),
            first: std::sync::OnceLock::new(),
        }
    }
}

/// Registers `site` as the one definition whose default operation path is `path`; `false` when
/// another site registered the same path first.
fn register_site(path: &'static str, site: &'static Site) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};
    static SITES: std::sync::OnceLock<Mutex<HashMap<&'static str, usize>>> =
        std::sync::OnceLock::new();
    let addr = std::ptr::from_ref(site) as usize;
    let mut sites = SITES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    *sites.entry(path).or_insert(addr) == addr
}

impl Operation {
    /// [`check`](Self::check), and, for a default operation name, that no other `#[idempotent]`
    /// function in this process has the same path (two same-named functions in two blocks or
    /// closures of one function): such a second function is refused, never given the first's
    /// records.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the fix (`name = "..."`), or [`check`](Self::check)'s error.
    #[inline]
    pub fn check_site(&self, site: &'static Site, default_name: bool) -> Result<(), Error> {
        self.check()?;
        if default_name
            && !*site
                .registered
                .get_or_init(|| register_site(self.path, site))
        {
            return Err(Error::InvalidKey {
                reason: "two `#[idempotent]` functions have the same path (same-named functions in two blocks or closures of one function), so their default operation names would share records; give each its own `#[idempotent(name = \"...\")]`",
            });
        }
        Ok(())
    }
}

/// Removes trailing `{{closure}}` segments (the body of an `async fn` or `async` block). A
/// compiler that printed them differently would leave them in: a different name and instance,
/// the same for every call of one function, so keys change but are never shared.
fn strip_closures(mut path: &'static str) -> &'static str {
    while let Some(head) = path.strip_suffix("::{{closure}}") {
        path = head;
    }
    path
}

/// `path` cut to `MAX_OPERATION_BYTES`: its start, `~`, and the FNV-1a 64 hash of the whole of
/// it in hex. The hash only makes the visible name tell long paths apart at a glance; the whole
/// path also enters the key's identity (see [`Operation::identify`]).
fn shorten(path: &str) -> String {
    const HASH_LEN: usize = 1 + 16;
    let mut end = idempotency_core::MAX_OPERATION_BYTES - HASH_LEN;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{}~{hash:016x}", &path[..end])
}

/// The shapes [`Operation::new`] relies on, checked once per process.
mod probe {
    use std::any::type_name_of_val;

    // The parameter is the point: its argument must show in the closure's type name.
    #[allow(clippy::extra_unused_type_parameters)]
    fn free<T>() -> &'static str {
        type_name_of_val(&|| ())
    }

    struct Generic<T>(T);

    impl<T> Generic<T> {
        fn associated() -> &'static str {
            type_name_of_val(&|| ())
        }
    }

    trait Defaulted {
        fn provided() -> &'static str {
            type_name_of_val(&|| ())
        }
    }

    impl Defaulted for u8 {}
    impl Defaulted for u16 {}

    /// Whether closures in a generic function, in an associated function of a generic type and
    /// in a trait's provided method show the instantiation.
    pub(super) fn shows_generics() -> bool {
        let _ = Generic(());
        free::<u8>() != free::<u16>()
            && Generic::<u8>::associated() != Generic::<u16>::associated()
            && <u8 as Defaulted>::provided() != <u16 as Defaulted>::provided()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{probe, strip_closures, Operation, Site};
    use idempotency_core::{Error, KeyEncoder, MAX_OPERATION_BYTES};

    fn key(op: &Operation, default_name: bool) -> Result<String, Error> {
        let mut enc = KeyEncoder::new(if default_name { op.name() } else { "pinned" }, 1);
        op.identify(&mut enc, default_name);
        enc.arg(&1_u8);
        Ok(enc.finish()?.key.as_str().to_owned())
    }

    #[test]
    fn a_site_keeps_its_first_identity_and_reads_every_other_one_anew() {
        static SITE: Site = Site::new();
        let item = "a::f::__idempotency_fn";
        let (u32s, u64s) = ("a::f<u32>::{{closure}}", "a::f<u64>::{{closure}}");
        let first = Operation::at(&SITE, item, u32s);
        assert!(matches!(first, Cow::Borrowed(_)));
        assert_eq!(first.instance, Some("<u32>"));
        // The same two names again: the kept identity, not read again.
        assert!(
            matches!(Operation::at(&SITE, item, u32s), Cow::Borrowed(o) if std::ptr::eq(o, &*first))
        );
        // Another instantiation at the same site: its own identity, every time.
        for _ in 0..2 {
            let other = Operation::at(&SITE, item, u64s);
            assert!(matches!(other, Cow::Owned(_)));
            assert_eq!(other.instance, Some("<u64>"));
        }
        // The same text at another address (a copy): read anew, to the same identity.
        let copy: &'static str = Box::leak(u32s.to_owned().into_boxed_str());
        let again = Operation::at(&SITE, item, copy);
        assert!(matches!(again, Cow::Owned(_)));
        assert_eq!((again.path, again.instance), (first.path, first.instance));
    }

    #[test]
    fn this_compiler_shows_the_generic_arguments_of_closures() {
        assert!(probe::shows_generics());
        assert!(
            Operation::new("a::f::__idempotency_fn", "a::f::{{closure}}")
                .check()
                .is_ok()
        );
    }

    #[test]
    fn the_path_loses_the_nested_item_and_async_closure_segments() {
        assert_eq!(strip_closures("a::f::{{closure}}::{{closure}}"), "a::f");
        // A closure among generic arguments is not a trailing segment.
        assert_eq!(
            strip_closures("a::f<a::main::{{closure}}>::{{closure}}"),
            "a::f<a::main::{{closure}}>"
        );
        let op = Operation::new(
            "a::W<_>::get::{{closure}}::__idempotency_fn",
            "a::W<u8>::get::{{closure}}::{{closure}}",
        );
        assert_eq!(op.name(), "a::W<_>::get");
        assert_eq!(op.instance, Some("a::W<u8>::get"));
    }

    #[test]
    fn a_free_function_keeps_only_its_generic_arguments() -> Result<(), Error> {
        let op = Operation::new("a::echo::__idempotency_fn", "a::echo<u32>::{{closure}}");
        assert_eq!(op.name(), "a::echo");
        assert_eq!(op.instance, Some("<u32>"));
        let plain = Operation::new("a::f::__idempotency_fn", "a::f::{{closure}}");
        assert_eq!(plain.instance, None);
        // Without instance parts the key is the one `KeyEncoder::new("a::f", 1)` derives.
        let mut enc = KeyEncoder::new("a::f", 1);
        enc.arg(&1_u8);
        assert_eq!(key(&plain, true)?, enc.finish()?.key.as_str());
        Ok(())
    }

    #[test]
    fn instantiations_differ_by_default_name_and_by_pinned_name() -> Result<(), Error> {
        let u32s = Operation::new("a::echo::__idempotency_fn", "a::echo<u32>::{{closure}}");
        let u64s = Operation::new("a::echo::__idempotency_fn", "a::echo<u64>::{{closure}}");
        assert_ne!(key(&u32s, true)?, key(&u64s, true)?);
        assert_ne!(key(&u32s, false)?, key(&u64s, false)?);
        let moved = Operation::new("b::echo::__idempotency_fn", "b::echo<u32>::{{closure}}");
        // A pinned name keeps a moved free function's keys.
        assert_eq!(key(&u32s, false)?, key(&moved, false)?);
        Ok(())
    }

    #[test]
    fn long_paths_are_shortened_to_distinct_valid_names_and_keys() -> Result<(), Error> {
        let long_a: &'static str =
            Box::leak(format!("{}::a::__idempotency_fn", "m".repeat(300)).into_boxed_str());
        let long_b: &'static str =
            Box::leak(format!("{}::b::__idempotency_fn", "m".repeat(300)).into_boxed_str());
        let a = Operation::new(long_a, &long_a[..long_a.len() - "::__idempotency_fn".len()]);
        let b = Operation::new(long_b, &long_b[..long_b.len() - "::__idempotency_fn".len()]);
        assert_eq!(a.name().len(), MAX_OPERATION_BYTES);
        assert_ne!(a.name(), b.name());
        assert!(a.name().starts_with("mmm") && a.name().contains('~'));
        assert_ne!(key(&a, true)?, key(&b, true)?);
        // Multi-byte characters are cut at a character boundary.
        let wide: &'static str =
            Box::leak(format!("{}::f::__idempotency_fn", "é".repeat(150)).into_boxed_str());
        let w = Operation::new(wide, "x");
        assert!(w.name().len() <= MAX_OPERATION_BYTES);
        assert!(KeyEncoder::new(w.name(), 1).finish().is_ok());
        Ok(())
    }
}
