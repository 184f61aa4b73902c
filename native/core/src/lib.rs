//! sg-agent's kernel-facing core, in plain Rust (no N-API): netlink framing for NETLINK_NETFILTER
//! subsystems, the ipset protocol with its client and sync logic, the nf_tables protocol with its
//! transactions and drift repair, and opening sockets in another network namespace. The addon in
//! `native/` only binds this to JS.

/// An enum of stable error codes with its `as_str` and `ALL` (every code, for the JS side and the
/// docs to be checked against) made from one list, so that no code can be left out of either.
macro_rules! stable_codes {
    ($(#[$doc:meta])* $vis:vis enum $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}

pub mod conntrack;
pub mod error;
pub mod ipset;
pub mod netlink;
pub mod netns;
pub mod nflog;
pub mod nftables;
pub mod packet;
pub mod tool;
