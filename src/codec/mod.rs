//! Wire formats: request decoding, result encoding and dead-letter headers. Pure functions over
//! bytes (no I/O), so they are unit-tested, property-tested and fuzzable on their own.

mod bad_input;
mod dead_letter;
mod request;
mod response;

pub use bad_input::{BadInput, BadInputKind};
pub use dead_letter::{dead_letter_headers, DeadLetterSource};
pub use request::{decode_request, Input, InputKind, Request};
pub use response::{encode_response, Response, Status};
