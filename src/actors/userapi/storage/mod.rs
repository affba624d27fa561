//! The userapi's tables, one file each. Nobody else reads them.

pub mod account_data;
pub mod accounts;
pub mod devices;
pub mod filters;
pub mod openid_tokens;
pub mod profiles;
