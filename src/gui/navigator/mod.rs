//! The parts of the navigator tab ([`super::navigator_panel`]): the plane view's geometry
//! ([`view`]), the tiles and jobs ([`tiles`]), the controls ([`controls`]), the recipes they
//! stand for and what is made of the results ([`recipes`]), what is remembered between runs
//! ([`settings`]), the drawing of the canvas ([`canvas`]), of tiles outside it ([`detail`]) and
//! of the status row ([`status`]), and the island overlay's GPU score field ([`score_field`],
//! over `shaders/score_field.wgsl`).
//!
//! Only `canvas`, `detail`, `status` and `score_field::gpu` draw; the others are plain data,
//! tested without a window.

pub mod canvas;
pub mod controls;
pub mod detail;
pub mod recipes;
pub mod score_field;
pub mod settings;
pub mod status;
pub mod tiles;
pub mod view;
