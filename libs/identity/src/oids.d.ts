export declare const OID: {
    readonly ecPublicKey: "1.2.840.10045.2.1";
    readonly prime256v1: "1.2.840.10045.3.1.7";
    readonly rsaEncryption: "1.2.840.113549.1.1.1";
    readonly ecdsaWithSha256: "1.2.840.10045.4.3.2";
    readonly sha256WithRsa: "1.2.840.113549.1.1.11";
    readonly extensionRequest: "1.2.840.113549.1.9.14";
    readonly commonName: "2.5.4.3";
    readonly organization: "2.5.4.10";
    readonly organizationalUnit: "2.5.4.11";
    readonly subjectKeyIdentifier: "2.5.29.14";
    readonly keyUsage: "2.5.29.15";
    readonly subjectAltName: "2.5.29.17";
    readonly basicConstraints: "2.5.29.19";
    readonly nameConstraints: "2.5.29.30";
    readonly authorityKeyIdentifier: "2.5.29.35";
    readonly extKeyUsage: "2.5.29.37";
    readonly serverAuth: "1.3.6.1.5.5.7.3.1";
    readonly clientAuth: "1.3.6.1.5.5.7.3.2";
};
/** keyUsage bit positions (RFC 5280 §4.2.1.3). */
export declare const KeyUsageBit: {
    readonly digitalSignature: 0;
    readonly nonRepudiation: 1;
    readonly keyEncipherment: 2;
    readonly dataEncipherment: 3;
    readonly keyAgreement: 4;
    readonly keyCertSign: 5;
    readonly cRLSign: 6;
    readonly encipherOnly: 7;
    readonly decipherOnly: 8;
};
