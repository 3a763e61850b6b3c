//! Rules that span several attributes of `#[derive(NormalizeKey)]`.

use super::ast::{Field, Input};
use crate::ctxt::Ctxt;

impl Input<'_> {
    pub(crate) fn validate(&self, cx: &Ctxt) {
        match self {
            Input::Struct(s) => s.fields.iter().for_each(|f| f.validate(cx)),
            Input::Enum(e) => e
                .variants
                .iter()
                .flat_map(|v| v.fields.iter())
                .for_each(|f| f.validate(cx)),
        }
    }
}

impl Field<'_> {
    /// `skip` leaves the field out and `with` says how to put it in: both at once means one of
    /// them is a mistake, and silently preferring either would hide it.
    fn validate(&self, cx: &Ctxt) {
        if let (Some(_), Some(with)) = (&self.attrs.skip, &self.attrs.with) {
            cx.error_spanned_by(with, "`#[idempotency(skip)]` and `#[idempotency(with = ...)]` contradict each other; a skipped field is not in the key at all");
        }
    }
}
