//! Dotted JSON paths (`a.b.c`, with keys that contain dots), over either parse tree.

use serde_json::Value as Json;

/// A parsed JSON document as the path functions see it: the full `serde_json` tree, or the
/// selective one of [`super::fields`]. One implementation of the path rules serves both, so they
/// cannot drift apart.
pub(super) trait Tree: Sized {
    /// The member `key` of an object; `None` for other values.
    fn member(&self, key: &str) -> Option<&Self>;
    fn member_mut(&mut self, key: &str) -> Option<&mut Self>;
    /// Removes the member `key` of an object; false if absent or not an object.
    fn remove_member(&mut self, key: &str) -> bool;
}

impl Tree for Json {
    fn member(&self, key: &str) -> Option<&Json> {
        self.get(key)
    }
    fn member_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.as_object_mut()?.get_mut(key)
    }
    fn remove_member(&mut self, key: &str) -> bool {
        self.as_object_mut()
            .is_some_and(|obj| obj.remove(key).is_some())
    }
}

/// Follows a dotted path (`a.b.c`); a key containing dots (Tasmota's `PM2.5`) is tried whole
/// first at each level.
pub(super) fn lookup<'j, T: Tree>(doc: &'j T, path: &str) -> Option<&'j T> {
    if let Some(v) = doc.member(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    if let Some(v) = doc.member(head) {
        if let Some(found) = lookup(v, rest) {
            return Some(found);
        }
    }
    // The dot may belong to the key: try longer heads.
    let mut idx = head.len() + 1;
    while let Some(pos) = path[idx..].find('.') {
        let (h, r) = (&path[..idx + pos], &path[idx + pos + 1..]);
        if let Some(found) = doc.member(h).and_then(|v| lookup(v, r)) {
            return Some(found);
        }
        idx += pos + 1;
    }
    None
}

/// Removes the value at dotted `path`, if present.
pub(super) fn remove_path<T: Tree>(doc: &mut T, path: &str) {
    if doc.remove_member(path) {
        return;
    }
    if let Some((head, rest)) = path.split_once('.') {
        if let Some(child) = doc.member_mut(head) {
            remove_path(child, rest);
        }
    }
}
