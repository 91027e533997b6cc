// The navigator's concept-score field: the concept meter's score for the island's concept,
// sampled on the lattice of a plane fill, drawn over the plane canvas as a smooth colour map
// (magenta off the island, green on it) with an anti-aliased shore where the score crosses the
// island threshold.
//
// The samples arrive as a small `rg32float` texture, one texel per lattice point: red is the
// score, green is 1 where a tile was made and 0 where it is missing. The shader interpolates
// them bilinearly itself (`textureLoad`, no sampler): 32-bit float textures are not filterable
// everywhere, and the same arithmetic as `ScoreField::at` on the CPU keeps the shore where the
// island report measures it. Missing samples drop out of the weighted sum, and the colour fades
// with the weight that was known.
//
// Drawn by an egui paint callback over the canvas's rectangle (src/gui/navigator/score_field.rs):
// the vertex stage covers the callback's viewport with one quad; the fragment stage maps its
// framebuffer pixel to (column, row) of the lattice with an affine map set each frame.

struct Params {
    // Lattice index (column, row) per framebuffer pixel, and at pixel (0, 0); rows count up
    // with v, so the y scale is negative.
    index_per_pixel: vec2<f32>,
    index_at_origin: vec2<f32>,
    // Colours in gamma space, not premultiplied: where the score is 1, where it is 0, and the
    // shore's.
    inside: vec4<f32>,
    outside: vec4<f32>,
    shore: vec4<f32>,
    // The score where the shore runs, and half the shore's width in framebuffer pixels.
    threshold: f32,
    shore_half_width_px: f32,
    padding: vec2<f32>,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var samples: texture_2d<f32>;

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> @builtin(position) vec4<f32> {
    // A triangle strip over the whole viewport: (-1, -1), (1, -1), (-1, 1), (1, 1).
    let x = f32(index & 1u) * 2.0 - 1.0;
    let y = f32((index >> 1u) & 1u) * 2.0 - 1.0;
    return vec4<f32>(x, y, 0.0, 1.0);
}

// The sample at a lattice index, clamped to the lattice.
fn sample_at(index: vec2<i32>) -> vec2<f32> {
    let last = vec2<i32>(textureDimensions(samples)) - vec2<i32>(1);
    return textureLoad(samples, clamp(index, vec2<i32>(0), last), 0).rg;
}

// Around a lattice position: the bilinear weighted sum of the known scores, the weight that was
// known (1 where every sample with a weight is known), and whether all four samples of the cell
// are known (1 or 0). Beyond the outermost samples the field is constant, as the outer tiles
// reach half a spacing past them.
fn bilinear(position: vec2<f32>) -> vec3<f32> {
    let last = vec2<f32>(textureDimensions(samples)) - vec2<f32>(1.0);
    let x = clamp(position, vec2<f32>(0.0), last);
    let cell = floor(x);
    let f = x - cell;
    let i = vec2<i32>(cell);
    let s00 = sample_at(i);
    let s10 = sample_at(i + vec2<i32>(1, 0));
    let s01 = sample_at(i + vec2<i32>(0, 1));
    let s11 = sample_at(i + vec2<i32>(1, 1));
    let w = vec4<f32>((1.0 - f.x) * (1.0 - f.y), f.x * (1.0 - f.y), (1.0 - f.x) * f.y, f.x * f.y);
    let known = vec4<f32>(s00.y, s10.y, s01.y, s11.y);
    let scores = vec4<f32>(s00.x, s10.x, s01.x, s11.x);
    let whole_cell = min(min(known.x, known.y), min(known.z, known.w));
    return vec3<f32>(dot(w * known, scores), dot(w, known), whole_cell);
}

// The field's colour at a framebuffer pixel, in gamma space and premultiplied.
fn field_colour(pixel: vec2<f32>) -> vec4<f32> {
    let position = pixel * params.index_per_pixel + params.index_at_origin;
    let sampled = bilinear(position);
    let known = sampled.y;
    let score = clamp(sampled.x / max(known, 1e-6), 0.0, 1.0);

    // Screen-space derivatives, taken before anything depends on them, in uniform control
    // flow: how much the score changes from one pixel to the next.
    let score_per_pixel = max(fwidth(score), 1e-6);

    // Inside the box the tiles cover (half a spacing past the outer samples), with an
    // anti-aliased edge one pixel wide.
    let size = vec2<f32>(textureDimensions(samples));
    let to_edge = min(position + vec2<f32>(0.5), size - vec2<f32>(0.5) - position);
    let edge_px = to_edge / max(abs(params.index_per_pixel), vec2<f32>(1e-12));
    let in_box = clamp(min(edge_px.x, edge_px.y) + 0.5, 0.0, 1.0);

    // The fill: from the outside colour to the inside colour with the score.
    let fill = mix(params.outside, params.inside, score);
    let fill_alpha = fill.a * known * in_box;

    // The shore: pixels within half its width of the threshold's contour, measured with the
    // score's screen gradient, faded over one pixel; only in cells whose four samples are known,
    // as the island report's marching squares do.
    let distance_px = abs(score - params.threshold) / score_per_pixel;
    let half_width = params.shore_half_width_px;
    let on_shore = 1.0 - smoothstep(half_width - 0.5, half_width + 0.5, distance_px);
    let shore_alpha = params.shore.a * on_shore * sampled.z * in_box;

    // The shore over the fill, premultiplied.
    let rgb = params.shore.rgb * shore_alpha + fill.rgb * fill_alpha * (1.0 - shore_alpha);
    let alpha = shore_alpha + fill_alpha * (1.0 - shore_alpha);
    return vec4<f32>(rgb, alpha);
}

// 0-1 linear from 0-1 sRGB gamma.
fn linear_from_gamma(srgb: vec3<f32>) -> vec3<f32> {
    let cutoff = srgb < vec3<f32>(0.04045);
    let lower = srgb / vec3<f32>(12.92);
    let higher = pow((srgb + vec3<f32>(0.055)) / vec3<f32>(1.055), vec3<f32>(2.4));
    return select(higher, lower, cutoff);
}

// For framebuffers that store gamma-encoded values (`Rgba8Unorm`, `Bgra8Unorm`), as egui
// prefers.
@fragment
fn fs_main_gamma_framebuffer(@builtin(position) pixel: vec4<f32>) -> @location(0) vec4<f32> {
    return field_colour(pixel.xy);
}

// For sRGB framebuffers, which encode on write: hand them linear values.
@fragment
fn fs_main_linear_framebuffer(@builtin(position) pixel: vec4<f32>) -> @location(0) vec4<f32> {
    let colour = field_colour(pixel.xy);
    return vec4<f32>(linear_from_gamma(colour.rgb), colour.a);
}
