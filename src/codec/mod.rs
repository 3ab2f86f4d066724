//! Wire formats: request decoding, result encoding and dead-letter headers. Pure functions over
//! bytes (no I/O), so they are unit-tested, property-tested and fuzzable on their own.

mod bad_input;
pub mod dead_letter;
mod envelope;
mod request;
mod response;

pub use bad_input::{BadInput, BadInputKind};
pub use dead_letter::{dead_letter_headers, DeadLetterSource};
pub use request::{
    decode_request, image_content_type, Input, InputKind, Request, RequestHeaders, HEADER_CONTENT_TYPE, HEADER_ID,
    HEADER_TENANT,
};
pub use response::{encode_response, Response, Status};
