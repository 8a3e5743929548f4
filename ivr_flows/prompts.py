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
    "review_menu": {
        "sv": "För att spara meddelandet, tryck 1. För att spela in det igen, tryck 2. "
        "För att lyssna på det, tryck 3.",
        "en": "To save your message, press 1. To record it again, press 2. "
        "To listen to it, press 3.",
    },
    "record_again": {
        "sv": "Spela in ditt meddelande efter tonen. Tryck fyrkant när du är klar.",
        "en": "Record your message after the tone. Press hash when you are done.",
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
    # --- the recordings disk is full (or refused a write)
    "mailbox_unavailable": {
        "sv": "Tyvärr kan vi inte ta emot meddelanden just nu.",
        "en": "Sorry, we cannot take messages right now.",
    },
    "message_partly_saved": {
        "sv": "Vi kunde inte spara hela meddelandet. Mottagningen får det du hann säga.",
        "en": "We could not save all of your message. The clinic will get what you said.",
    },
    "other_ways_both": {
        "sv": "För att bli uppringd, tryck 2. För växeln, tryck 0.",
        "en": "To be called back, press 2. For the switchboard, press 0.",
    },
    "other_ways_callback": {
        "sv": "För att bli uppringd, tryck 2.",
        "en": "To be called back, press 2.",
    },
    "other_ways_switchboard": {
        "sv": "För växeln, tryck 0.",
        "en": "For the switchboard, press 0.",
    },
    "call_again_later": {
        "sv": "Ring gärna igen senare. Hej då.",
        "en": "Please call again later. Goodbye.",
    },
}

PROMPTS.update(
    {
        # --- callback booking (caller side)
        "callback_offer": {"sv": "Vi kan ringa upp dig", "en": "We can call you back"},
        "callback_offer_keys": {
            "sv": "Tryck 1 för att boka den tiden, eller 2 för nästa lediga tid.",
            "en": "Press 1 to book that time, or 2 for the next free time.",
        },
        "callback_none_free": {
            "sv": "Tyvärr finns inga lediga tider för återuppringning just nu. Ring gärna igen.",
            "en": "Sorry, there are no free callback times right now. Please call again.",
        },
        "callback_existing": {
            "sv": "Du har redan en bokad återuppringning",
            "en": "You already have a callback booked",
        },
        "callback_existing_keys": {
            "sv": "Tryck 1 för att behålla tiden, eller 2 för att byta tid.",
            "en": "Press 1 to keep that time, or 2 to change it.",
        },
        "callback_kept": {"sv": "Din tid ligger kvar.", "en": "Your time is kept."},
        "callback_number_is": {"sv": "Vi ringer till", "en": "We will call"},
        "callback_number_keys": {
            "sv": "Tryck 1 om det stämmer, "
            "eller knappa in ett annat nummer och avsluta med fyrkant.",
            "en": "Press 1 if that is correct, or key in another number and end with hash.",
        },
        "callback_enter_number": {
            "sv": "Knappa in det telefonnummer vi ska ringa, och avsluta med fyrkant.",
            "en": "Key in the phone number we should call, and end with hash.",
        },
        "callback_number_invalid": {
            "sv": "Vi kan bara ringa svenska telefonnummer. Försök igen.",
            "en": "We can only call Swedish phone numbers. Please try again.",
        },
        "callback_slot_taken": {
            "sv": "Den tiden hann just bli full.",
            "en": "That time has just been taken.",
        },
        "callback_booked": {"sv": "Du är bokad för återuppringning", "en": "You are booked"},
        "callback_from_number": {
            "sv": "Samtalet kommer från nummer",
            "en": "The call will come from number",
        },
        "callback_message_offer": {
            "sv": "Vill du lämna ett kort meddelande till sjuksköterskan, tryck 1. "
            "Annars kan du lägga på.",
            "en": "To leave a short message for the nurse, press 1. Otherwise you can hang up.",
        },
        "callback_message_instructions": {
            "sv": "Säg ditt meddelande efter tonen. Tryck fyrkant när du är klar.",
            "en": "Say your message after the tone. Press hash when you are done.",
        },
        "callback_message_saved": {
            "sv": "Tack, sjuksköterskan får ditt meddelande.",
            "en": "Thank you, the nurse will get your message.",
        },
        # --- time phrases
        "today": {"sv": "idag", "en": "today"},
        "tomorrow": {"sv": "imorgon", "en": "tomorrow"},
        "between": {"sv": "mellan", "en": "between"},
        "and": {"sv": "och", "en": "and"},
        "at": {"sv": "klockan", "en": "at"},
        # --- staff side of a callback
        "staff_callback_announce": {
            "sv": "Återuppringning bokad",
            "en": "Callback booked",
        },
        "staff_callback_keys": {
            "sv": "Tryck 1 för att ringa patienten nu, eller 2 för att skjuta upp tio minuter.",
            "en": "Press 1 to call the patient now, or 2 to postpone ten minutes.",
        },
        "staff_postponed": {"sv": "Uppskjutet tio minuter.", "en": "Postponed ten minutes."},
        "staff_patient_no_answer": {
            "sv": "Patienten svarade inte. Vi försöker igen senare.",
            "en": "The patient did not answer. We will try again later.",
        },
        "staff_connecting": {"sv": "Ringer patienten.", "en": "Calling the patient."},
        "patient_intro": {
            "sv": "Hej, det här är vårdcentralen som ringer upp dig enligt din bokning. "
            "Du kopplas nu till en sjuksköterska.",
            "en": "Hello, this is the clinic calling you back as booked. "
            "You are now connected to a nurse.",
        },
        # --- switchboard
        "transferring": {
            "sv": "Du kopplas till växeln.",
            "en": "Connecting you to the switchboard.",
        },
        "transfer_failed": {
            "sv": "Växeln svarar inte just nu. Försök igen senare.",
            "en": "The switchboard is not answering right now. Please try again later.",
        },
    }
)

WEEKDAYS = {
    "sv": ["på måndag", "på tisdag", "på onsdag", "på torsdag", "på fredag", "på lördag",
           "på söndag"],
    "en": ["on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday",
           "on Saturday", "on Sunday"],
}  # fmt: skip
for _d in range(7):
    PROMPTS[f"weekday_{_d}"] = {lang: days[_d] for lang, days in WEEKDAYS.items()}

NUMBER_WORDS_SV = (
    "noll ett två tre fyra fem sex sju åtta nio tio elva tolv tretton fjorton femton sexton "
    "sjutton arton nitton"
).split()
TENS_SV = {2: "tjugo", 3: "trettio", 4: "fyrtio", 5: "femtio"}
NUMBER_WORDS_EN = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS_EN = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty"}


def _number_word(n: int, words: list[str], tens: dict[int, str], sep: str) -> str:
    if n < 20:
        return words[n]
    return tens[n // 10] + (sep + words[n % 10] if n % 10 else "")


for _n in range(60):
    PROMPTS[f"num_{_n}"] = {
        "sv": _number_word(_n, NUMBER_WORDS_SV, TENS_SV, ""),
        "en": _number_word(_n, NUMBER_WORDS_EN, TENS_EN, "-"),
    }

DIGIT_WORDS = {
    "sv": ["noll", "ett", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio"],
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
}
for _d in range(10):
    PROMPTS[f"digit_{_d}"] = {lang: words[_d] for lang, words in DIGIT_WORDS.items()}

TEMPORARY_MESSAGE = "temporary_message"
"""Not in PROMPTS: a clinic's own temporary message ("Mottagningen är stängd idag på grund
av ..."), made in the staff UI and handed to each call by the server; played first on every call
while it is in force (ivr_flows/main_menu.py)."""

LANGUAGES = ("sv", "en")
ESPEAK_VOICES = {"sv": "sv", "en": "en-gb"}
