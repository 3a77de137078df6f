//! Following relcache invalidations, for every per-backend cache of this library (the
//! hot path's tables and rows, table quotas' rules, the installed version, tenant
//! bindings).
//!
//! One callback is registered with PostgreSQL per backend (it cannot be unregistered);
//! it advances a generation counter and tells each listener which relation changed
//! (`InvalidOid`: possibly all). A cache that loads an entry reads the generation first
//! and keeps the entry only if it is unchanged afterwards: an invalidation processed
//! while loading (a catalog change committed meanwhile) may not be reflected in it.

use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::{Cell, RefCell};

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static LISTENERS: RefCell<Vec<fn(Oid)>> = const { RefCell::new(Vec::new()) };
    static ROLES_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static ROLE_LISTENERS: RefCell<Vec<fn()>> = const { RefCell::new(Vec::new()) };
}

fn add<T: Copy>(list: &'static std::thread::LocalKey<RefCell<Vec<T>>>, item: T, same: impl Fn(&T, &T) -> bool) {
    list.with(|l| {
        let mut l = l.borrow_mut();
        if !l.iter().any(|f| same(f, &item)) {
            l.push(item);
        }
    });
}

/// SAFETY: called by PostgreSQL's invalidation processing, in this backend, outside any
/// borrow of the listeners (they only clear their own caches).
unsafe extern "C-unwind" fn on_relcache(_arg: Datum, relid: Oid) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    let listeners = LISTENERS.with(|l| l.borrow().clone());
    for listener in listeners {
        listener(relid);
    }
}

/// Call `listener` on every relcache invalidation of this backend from now on (once,
/// however often it is passed). Returns the current generation.
pub fn listen(listener: fn(Oid)) -> u64 {
    if !REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: registers a callback that stays valid for the life of the backend
        // (this library is never unloaded).
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), Datum::from(0usize)) };
    }
    add(&LISTENERS, listener, |a, b| std::ptr::fn_addr_eq(*a, *b));
    generation()
}

/// SAFETY: as `on_relcache`, for the role catalogs' syscache invalidations.
unsafe extern "C-unwind" fn on_roles(_arg: Datum, _cacheid: i32, _hash: u32) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    let listeners = ROLE_LISTENERS.with(|l| l.borrow().clone());
    for listener in listeners {
        listener();
    }
}

/// Call `listener` whenever a role or a role membership changes (pg_authid,
/// pg_auth_members). Returns the current generation, which these advance too.
pub fn listen_roles(listener: fn()) -> u64 {
    if !ROLES_REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: registers callbacks that stay valid for the life of the backend.
        unsafe {
            for cache in [pg_sys::SysCacheIdentifier::AUTHOID, pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE, pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM]
            {
                pg_sys::CacheRegisterSyscacheCallback(cache as _, Some(on_roles), Datum::from(0usize));
            }
        }
    }
    add(&ROLE_LISTENERS, listener, |a, b| std::ptr::fn_addr_eq(*a, *b));
    generation()
}

pub fn generation() -> u64 {
    GENERATION.with(|g| g.get())
}

/// No invalidation was processed since `generation` was read.
pub fn unchanged_since(generation: u64) -> bool {
    self::generation() == generation
}

/// Process pending invalidations now (as a new statement would).
pub fn accept() {
    // SAFETY: inside a transaction, as at the start of every statement.
    unsafe { pg_sys::AcceptInvalidationMessages() };
}
