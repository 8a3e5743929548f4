"""Every sentence the IVR says, in Swedish and English.

Prompts are generated into WAV files from this text (espeak-ng) at set-up; a clinic can replace
any of them with a real recording in its clinic file. Keep sentences short: callers are often
elderly and on a poor line.
"""

from __future__ import annotations

PROMPTS: dict[str, dict[str, str]] = {
    "welcome": {
        "sv": "Välkommen.",
        "en": "Welcome.",
    },
    "menu": {
        "sv": "För att avboka eller boka om en tid, tryck 1. "
        "För att bli uppringd, tryck 2. För växeln, tryck 0. For English, press 9.",
        "en": "To cancel or rebook an appointment, press 1. To be called back, press 2. "
        "For the switchboard, press 0.",
    },
    "closed": {
        "sv": "Mottagningen har stängt just nu. Du kan fortfarande avboka en tid: tryck 1. "
        "For English, press 9.",
        "en": "The clinic is closed right now. You can still cancel an appointment: press 1.",
    },
    "invalid_choice": {
        "sv": "Det valet finns inte.",
        "en": "That is not an option.",
    },
    "no_callback": {
        "sv": "Den här mottagningen erbjuder inte återuppringning. Ring igen under telefontiden.",
        "en": "This clinic does not offer callbacks. Please call again during phone hours.",
    },
    "no_switchboard": {
        "sv": "Växeln kan inte nås härifrån just nu.",
        "en": "The switchboard cannot be reached from here right now.",
    },
    "goodbye": {
        "sv": "Tack för att du ringde. Hej då.",
        "en": "Thank you for calling. Goodbye.",
    },
    "unknown_number": {
        "sv": "Numret du har ringt är inte kopplat till någon mottagning. "
        "Kontrollera numret och ring igen. Hej då.",
        "en": "The number you called is not connected to a clinic. Goodbye.",
    },
    "enter_pnr": {
        "sv": "Knappa in ditt personnummer, tolv siffror, och avsluta med fyrkant. "
        "Om du inte vill knappa in det, tryck bara fyrkant.",
        "en": "Key in your Swedish personal identity number, twelve digits, and end with hash. "
        "If you do not want to key it in, just press hash.",
    },
    "pnr_invalid": {
        "sv": "Det personnumret stämmer inte.",
        "en": "That number is not valid.",
    },
    "pnr_skip": {
        "sv": "Då får du säga ditt personnummer i meddelandet.",
        "en": "Then please say your number in the message.",
    },
    "pnr_readback": {
        "sv": "Du knappade in",
        "en": "You entered",
    },
    "pnr_confirm": {
        "sv": "Tryck 1 om det stämmer, eller 2 för att knappa in igen.",
        "en": "Press 1 if that is correct, or 2 to enter it again.",
    },
    "record_instructions": {
        "sv": "Efter tonen, säg ditt namn och vilken tid du vill avboka. "
        "Lägg på eller tryck fyrkant när du är klar.",
        "en": "After the tone, say your name and which appointment you want to cancel. "
        "Hang up or press hash when you are done.",
    },
    "message_saved": {
        "sv": "Tack, ditt meddelande är sparat. Mottagningen hanterar det. Hej då.",
        "en": "Thank you, your message has been saved. The clinic will handle it. Goodbye.",
    },
    "message_too_short": {
        "sv": "Vi hörde inget meddelande. Ring gärna igen. Hej då.",
        "en": "We did not hear a message. Please call again. Goodbye.",
    },
    "error": {
        "sv": "Ett tekniskt fel uppstod. Försök igen senare.",
        "en": "A technical error occurred. Please try again later.",
    },
}

DIGIT_WORDS = {
    "sv": ["noll", "ett", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio"],
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
}
for _d in range(10):
    PROMPTS[f"digit_{_d}"] = {lang: words[_d] for lang, words in DIGIT_WORDS.items()}

LANGUAGES = ("sv", "en")
ESPEAK_VOICES = {"sv": "sv", "en": "en-gb"}
