//! One file per userapi message.

pub mod input_device_activity;
pub mod perform_account_creation;
pub mod perform_account_data_update;
pub mod perform_account_deactivation;
pub mod perform_device_creation;
pub mod perform_device_deletion;
pub mod perform_device_update;
pub mod perform_filter_creation;
pub mod perform_guest_upgrade;
pub mod perform_open_id_token_creation;
pub mod perform_password_update;
pub mod perform_profile_update;
pub mod perform_push_rule_update;
pub mod perform_room_tag_update;
pub mod perform_room_upgrade_copy;
pub mod perform_token_refresh;
pub mod query_access_token;
pub mod query_account_availability;
pub mod query_account_data;
pub mod query_device;
pub mod query_devices;
pub mod query_filter;
pub mod query_open_id_token;
pub mod query_password_check;
pub mod query_profile;
pub mod query_push_rules;
