//! Encrypted images (ocicrypt): being written (issue 17). Until then the configuration
//! refuses decryption keys and encrypted layers are refused at pull and create.
